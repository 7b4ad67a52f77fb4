import { afterAll, expect, test } from "bun:test";
import { dirname } from "node:path";
import { call, signalAndWait, waitForJobLog } from "../e2e/serve-child";
import { describeWithChromium } from "../chromium";
import { describeProcesses, descendantsOf, isChromium, isWorker, processesMentioning, stillRunning, waitFor, workerScope } from "./process-tree";

// The server is SIGKILLed (no shutdown runs) while a handler spins in a busy
// loop with its Chromium open: its worker and browser must not outlive it.
// Once the server is gone they would be reparented, so the test takes their
// pids (and start times) from /proc while the server still runs, and also
// looks for any process naming the worker's directory (its browser profile
// is there). The handler's own view of pids is no use for this: inside
// bubblewrap it has a PID namespace of its own.

const scope = workerScope();
afterAll(() => scope.cleanup());

describeWithChromium("a server SIGKILLed while a worker runs a job", () => {
  for (const sandbox of ["auto", "none"] as const) {
    test(`takes the worker and its Chromium with it within seconds (UNDERSTUDY_WORKER_SANDBOX=${sandbox})`, async () => {
      const deployment = scope.deployment({ UNDERSTUDY_WORKER_SANDBOX: sandbox });
      const key = await deployment.addTenant("acme");
      const server = await scope.start(deployment);
      const created = await call(server, key, "/v1/jobs/create", { workflow: "spin", params: {} });
      expect(created.status).toBe(200);
      await waitForJobLog(server, key, created.body.job_id, "spin: spinning", 20_000);
      const logs = (await call(server, key, "/v1/logs/list", { jobId: created.body.job_id })).body.logs as { message: string }[];
      const workerDir = /spin: spinning in (\S+),/.exec(logs.find((l) => l.message.startsWith("spin: spinning"))!.message)![1]!;
      // No shutdown will remove the workers' directories.
      scope.removeLater(dirname(workerDir));

      const tree = descendantsOf(server.child.pid);
      expect(tree.filter(isWorker).length, describeProcesses(tree)).toBeGreaterThan(0);
      expect(tree.filter(isChromium).length, describeProcesses(tree)).toBeGreaterThan(0);
      expect(processesMentioning(workerDir).filter(isChromium).length).toBeGreaterThan(0);

      const killed = await signalAndWait(server, "SIGKILL", 5000);
      expect(killed.exited).toBe(true);
      const left = () => [...tree.filter(stillRunning), ...processesMentioning(workerDir)];
      await waitFor(() => left().length === 0, 5000, () => `still running after the server's SIGKILL:\n${describeProcesses(left())}`);
    }, 40_000);
  }
});
