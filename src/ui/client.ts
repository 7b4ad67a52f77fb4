/**
 * The dashboard's only script, served as /ui/assets/app.<hash>.js (never
 * inline: the Content-Security-Policy allows scripts from 'self' only). It is
 * progressive: every page works without it, by forms and links. It adds the
 * live log of a running job (server-sent events).
 *
 * This function is sent as its own source text (`dashboardClient.toString()`),
 * so it must use nothing from outside its body.
 */
export function dashboardClient(): void {
  const browser = globalThis as unknown as { document: Doc; EventSource: new (url: string) => Source; location: { reload(): void } };
  const { document } = browser;
  const log = document.querySelector("[data-log-stream]");
  if (!log) return;
  const list = log.querySelector("ol");
  const state = document.querySelector("[data-job-status]");
  const url = log.dataset.logStream;
  if (!list || !url) return;
  const source = new browser.EventSource(url);
  source.addEventListener("line", (event) => {
    const line = JSON.parse(event.data) as { level: string; message: string; timestamp: string };
    const item = document.createElement("li");
    item.className = `log-${line.level}`;
    const time = document.createElement("time");
    time.dateTime = line.timestamp;
    time.textContent = line.timestamp.slice(11, 23);
    const level = document.createElement("span");
    level.className = "level";
    level.textContent = line.level;
    const message = document.createElement("span");
    message.className = "message";
    message.textContent = line.message;
    item.append(time, " ", level, " ", message);
    list.append(item);
    const empty = log.querySelector("[data-log-empty]");
    if (empty) empty.remove();
  });
  source.addEventListener("status", (event) => {
    if (state) state.textContent = (JSON.parse(event.data) as { status: string }).status;
  });
  // The job ended: the page is loaded again to show its result or error.
  source.addEventListener("end", () => {
    source.close();
    browser.location.reload();
  });
}

// The few DOM types the script uses: the project compiles without the DOM
// library (its types clash with Bun's), so they are declared here.
interface Node {
  className: string;
  textContent: string | null;
  dataset: Record<string, string | undefined>;
  dateTime: string;
  querySelector(selector: string): Node | null;
  append(...nodes: (Node | string)[]): void;
  remove(): void;
}
interface Doc {
  querySelector(selector: string): Node | null;
  createElement(tag: string): Node;
}
interface Source {
  addEventListener(type: string, listener: (event: { data: string }) => void): void;
  close(): void;
}
