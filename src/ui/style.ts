/**
 * The dashboard's one stylesheet (served as /ui/assets/style.<hash>.css). No
 * inline styles anywhere: the Content-Security-Policy allows styles from
 * 'self' only. Colours keep a contrast of at least 4.5:1 (WCAG AA).
 */
export const STYLESHEET = `
:root { --fg: #1b1f24; --muted: #4b5563; --line: #d0d7de; --bg: #fff; --soft: #f6f8fa; --link: #0a58ca; --accent: #0b5cad;
  --ok-bg: #dff5e3; --ok-fg: #0f5323; --bad-bg: #fde2e1; --bad-fg: #8a1c14; --run-bg: #e0ecff; --run-fg: #0b3d91; --wait-bg: #fff4ce; --wait-fg: #5c4400; }
* { box-sizing: border-box; }
html { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
body { margin: 0; }
a { color: var(--link); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible, summary:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.skip { position: absolute; left: -999px; top: 0; background: var(--fg); color: #fff; padding: .5rem 1rem; }
.skip:focus { left: 0; z-index: 10; }
header.top { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.5rem; padding: .6rem 1.25rem; border-bottom: 1px solid var(--line); background: var(--soft); }
header.top .brand { font-weight: 700; color: var(--fg); text-decoration: none; }
header.top nav ul { display: flex; flex-wrap: wrap; gap: .25rem 1rem; list-style: none; margin: 0; padding: 0; }
header.top nav a { text-decoration: none; padding: .2rem .1rem; }
header.top nav a[aria-current="page"] { font-weight: 700; border-bottom: 3px solid var(--accent); color: var(--fg); }
header.top .who { margin-left: auto; display: flex; align-items: center; gap: .75rem; color: var(--muted); }
main { padding: 1rem 1.25rem 3rem; max-width: 1200px; }
h1 { font-size: 1.5rem; margin: .25rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
.table-wrap { overflow-x: auto; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
pre { background: var(--soft); border: 1px solid var(--line); padding: .75rem; overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 999px; font-size: .85em; font-weight: 600; background: var(--soft); color: var(--fg); border: 1px solid var(--line); }
.badge.completed, .badge.ok, .badge.ready, .badge.success, .badge.delivered { background: var(--ok-bg); color: var(--ok-fg); }
.badge.failed, .badge.bad, .badge.rejected, .badge.conflict, .badge.integrity_failure, .badge.dead { background: var(--bad-bg); color: var(--bad-fg); }
.badge.running, .badge.starting_browser, .badge.building { background: var(--run-bg); color: var(--run-fg); }
.badge.queued, .badge.pending, .badge.cancelled, .badge.not_found { background: var(--wait-bg); color: var(--wait-fg); }
.badge.succeeded, .badge.enabled { background: var(--ok-bg); color: var(--ok-fg); }
.badge.disabled { background: var(--wait-bg); color: var(--wait-fg); }
ol.fires { margin: 0; padding-left: 1.2rem; }
dl.delivery-detail { display: grid; grid-template-columns: max-content 1fr; gap: .25rem .75rem; }
dl.delivery-detail dd { margin: 0; }
dl.delivery-detail pre, td code[data-response-excerpt] { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 60ch; }
nav.pager ul { display: flex; gap: 1rem; list-style: none; padding: 0; margin: 0; }
.badge.present { background: var(--ok-bg); color: var(--ok-fg); }
.badge.missing { background: var(--bad-bg); color: var(--bad-fg); }
.warning { padding: .6rem .9rem; border-radius: 6px; margin: 0 0 1rem; border: 1px solid #e8c15a; background: var(--wait-bg); color: var(--wait-fg); }
.error-text { color: var(--bad-fg); }
.required { font-weight: 600; }
.field-name { font-family: ui-monospace, Menlo, Consolas, monospace; }
pre.schema { overflow: auto; max-height: 30rem; }
nav.pager { display: flex; gap: 1rem; margin-top: 1rem; }
.flash { padding: .6rem .9rem; border-radius: 6px; margin: 0 0 1rem; border: 1px solid; }
.flash.ok { background: var(--ok-bg); color: var(--ok-fg); border-color: #9bd3a7; }
.flash.error { background: var(--bad-bg); color: var(--bad-fg); border-color: #f1a9a4; }
form.inline { display: inline; }
form.stack { display: grid; gap: .75rem; max-width: 36rem; }
form.filters { display: flex; flex-wrap: wrap; gap: .75rem; align-items: end; margin-bottom: 1rem; }
label { display: grid; gap: .2rem; font-weight: 600; }
label.check { display: flex; gap: .5rem; align-items: center; }
label .hint, .hint { font-weight: 400; color: var(--muted); font-size: .9em; }
input, select, textarea { font: inherit; padding: .4rem .5rem; border: 1px solid #6b7280; border-radius: 4px; background: #fff; color: var(--fg); }
textarea { min-height: 6rem; font-family: ui-monospace, Menlo, Consolas, monospace; }
button, .button { font: inherit; padding: .4rem .9rem; border-radius: 4px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; display: inline-block; }
button.secondary { background: #fff; color: var(--accent); }
button.danger { background: #b42318; border-color: #b42318; }
button.link { background: none; border: none; color: var(--link); padding: 0; text-decoration: underline; }
details { margin: .25rem 0; }
summary { cursor: pointer; color: var(--link); }
dl.facts, dl.details { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; margin: 0 0 1rem; }
dl.facts dt, dl.details dt { font-weight: 600; }
dl.facts dd, dl.details dd { margin: 0; }
.log { border: 1px solid var(--line); background: #0d1117; color: #e6edf3; padding: .5rem .75rem; border-radius: 6px; max-height: 28rem; overflow-y: auto; }
.log ol { list-style: none; margin: 0; padding: 0; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85rem; }
.log li { white-space: pre-wrap; word-break: break-word; }
.log time { color: #9da7b3; }
.log .level { color: #9da7b3; }
.log .log-warn .level { color: #f2cc60; }
.log .log-error .level, .log .log-error .message { color: #ff9b93; }
ul.artifacts { list-style: none; padding: 0; }
.artifacts { display: flex; flex-wrap: wrap; gap: 1rem; }
.artifacts figure { margin: 0; max-width: 100%; }
.artifacts img { max-width: 480px; width: 100%; border: 1px solid var(--line); }
.signin { max-width: 28rem; margin: 4rem auto; padding: 1.5rem; border: 1px solid var(--line); border-radius: 8px; }
.actions { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
.pager { margin-top: 1rem; }
@media (max-width: 640px) {
  html { font-size: 14px; }
  main { padding: .75rem; }
  header.top { padding: .5rem .75rem; }
  header.top .who { margin-left: 0; }
  dl.facts { grid-template-columns: 1fr; }
  dl.facts dd, dl.details dd { margin-bottom: .4rem; }
  table.responsive thead { position: absolute; left: -9999px; }
  table.responsive tr { display: block; border-bottom: 1px solid var(--line); padding: .4rem 0; }
  table.responsive td { display: block; border: none; padding: .1rem 0; }
  table.responsive td[data-label]::before { content: attr(data-label) ": "; font-weight: 600; }
}
`;
