// The load generator: autocannon, in a `node` process of its own, so that
// generating load never shares an event loop with the server it measures.
//
// Input: one JSON argument (a LoadSpec, see load.ts). Output: autocannon's
// result object as one JSON line on stdout. Exit 1 with a message on stderr
// when autocannon itself fails.
import autocannon from "autocannon";

const spec = JSON.parse(process.argv[2] ?? "{}");

/** @type {Record<string, unknown>} */
const request = { method: spec.method, path: spec.path, headers: spec.headers ?? {} };
if (typeof spec.body === "string") request.body = spec.body;
if (typeof spec.bodyTemplate === "string") {
  // `{n}` becomes a counter, so that each request can address a new row.
  let n = 0;
  const template = spec.bodyTemplate;
  request.setupRequest = (req) => ({ ...req, body: template.replaceAll("{n}", String(n++)) });
}

try {
  const result = await autocannon({
    url: spec.url,
    connections: spec.connections,
    duration: spec.durationSeconds,
    timeout: spec.timeoutSeconds ?? 10,
    requests: [request],
    ...(spec.warmupSeconds > 0 ? { warmup: { connections: spec.connections, duration: spec.warmupSeconds } } : {}),
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (error) {
  process.stderr.write(`load generator: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
