/**
 * Network safety of webhook targets: the address policy, one DNS lookup per
 * attempt with the connection pinned to the checked address, and a server
 * that does not allow private targets (the `serve` default).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { classifyAddress, describeRefusal, refusalOf, type ResolvedAddress, type Resolver } from "../../src/webhooks/address";
import { parseRetryAfter, sendWebhook } from "../../src/webhooks/send";
import { workflow } from "../../src/workflows/define";
import { addTenant, startTestServer, uniqueName, type TestServer } from "../helpers";
import { expectError, expectOk } from "../http/wire";
import { createJob, FAST_ENV, waitForEnd } from "../jobs/support";
import { createEndpoint, startReceiver, waitForSettled, type Receiver } from "./support";

describe("the address policy", () => {
  const cases: [string, "public" | "private" | "forbidden"][] = [
    ["93.184.216.34", "public"],
    ["8.8.8.8", "public"],
    ["2606:4700:4700::1111", "public"],
    ["169.254.169.254", "forbidden"],
    ["169.254.0.1", "forbidden"],
    ["0.0.0.0", "forbidden"],
    ["0.1.2.3", "forbidden"],
    ["224.0.0.251", "forbidden"],
    ["239.255.255.250", "forbidden"],
    ["255.255.255.255", "forbidden"],
    ["::", "forbidden"],
    ["fe80::1", "forbidden"],
    ["fe80::1%eth0", "forbidden"],
    ["febf:ffff::1", "forbidden"],
    ["ff02::1", "forbidden"],
    ["::ffff:169.254.169.254", "forbidden"],
    ["::ffff:a9fe:a9fe", "forbidden"],
    ["0:0:0:0:0:ffff:a9fe:a9fe", "forbidden"],
    ["::ffff:0:169.254.169.254", "forbidden"],
    ["::169.254.169.254", "forbidden"],
    ["64:ff9b::169.254.169.254", "forbidden"],
    ["2002:a9fe:a9fe::1", "forbidden"],
    ["::ffff:0.0.0.0", "forbidden"],
    ["::ffff:224.0.0.1", "forbidden"],
    ["127.0.0.1", "private"],
    ["127.255.0.9", "private"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["100.64.0.1", "private"],
    ["::1", "private"],
    ["fd00::1", "private"],
    ["fc00::1", "private"],
    ["fec0::1", "private"],
    ["::ffff:127.0.0.1", "private"],
    ["::ffff:7f00:1", "private"],
    ["::ffff:10.0.0.1", "private"],
    ["64:ff9b::10.0.0.1", "private"],
    ["172.32.0.1", "public"],
    ["100.128.0.1", "public"],
    ["::ffff:8.8.8.8", "public"],
    ["64:ff9b::8.8.8.8", "public"],
    ["not-an-ip", "forbidden"],
  ];
  for (const [address, kind] of cases) {
    test(`${address} is ${kind}`, () => expect(classifyAddress(address).kind).toBe(kind));
  }

  test("private addresses are refused unless allowed; forbidden ones always", () => {
    expect(describeRefusal(refusalOf("127.0.0.1", false)!)).toBe(
      "127.0.0.1 is a loopback address (127.0.0.0/8); webhook targets on loopback and private networks need UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE=1 on the server",
    );
    expect(refusalOf("127.0.0.1", true)).toBeUndefined();
    expect(describeRefusal(refusalOf("169.254.169.254", true)!, "metadata.internal")).toBe(
      "metadata.internal resolves to 169.254.169.254, a link-local address (169.254.0.0/16, where cloud metadata services answer); webhooks are never sent there",
    );
    expect(refusalOf("::ffff:169.254.169.254", true)!.what).toContain("IPv4-mapped");
    expect(refusalOf("8.8.8.8", false)).toBeUndefined();
  });
});

describe("Retry-After", () => {
  const now = new Date("2026-03-01T12:00:00.000Z");
  test("seconds, an HTTP date, and nonsense", () => {
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
    expect(parseRetryAfter("Sun, 01 Mar 2026 12:05:00 GMT", now)).toBe(300_000);
    expect(parseRetryAfter("Sun, 01 Mar 2026 11:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter("-5", now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});

describe("one lookup per attempt, and the connection goes to the checked address", () => {
  let receiver: Receiver;
  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(async () => receiver.close());

  const attempt = (url: string, resolve: Resolver, allowPrivate = true) =>
    sendWebhook({
      url,
      body: Buffer.from('{"event":"job.completed"}'),
      headers: { "content-type": "application/json" },
      timeoutMs: 2000,
      allowPrivate,
      resolve,
      now: () => new Date(),
    });

  /** A resolver that answers from a script, one answer per call, and counts its calls. */
  function scripted(...answers: ResolvedAddress[][]): Resolver & { calls: string[] } {
    const calls: string[] = [];
    const resolve = (async (hostname: string) => {
      calls.push(hostname);
      return answers[Math.min(calls.length - 1, answers.length - 1)]!;
    }) as Resolver & { calls: string[] };
    resolve.calls = calls;
    return resolve;
  }

  test("a rebinding name (loopback, then the metadata address) is looked up once and the request goes to the first, checked answer", async () => {
    const resolve = scripted([{ address: "127.0.0.1", family: 4 }], [{ address: "169.254.169.254", family: 4 }]);
    const before = receiver.received.length;
    // .invalid never resolves in real DNS: the request arriving at all proves no system lookup was made.
    const outcome = await attempt(`http://rebind.invalid:${receiver.port}/hook`, resolve);
    expect(outcome).toMatchObject({ kind: "answered", ok: true, statusCode: 200 });
    expect(resolve.calls).toEqual(["rebind.invalid"]);
    const request = receiver.received[before]!;
    // The Host header keeps the name; the socket went to the checked address.
    expect(request.headers.host).toBe(`rebind.invalid:${receiver.port}`);
    expect(request.remoteAddress).toBe("127.0.0.1");
    expect(request.path).toBe("/hook");
  });

  test("every address of a name is checked: one refused address refuses the name, and nothing is sent", async () => {
    const before = receiver.received.length;
    for (const answer of [
      [{ address: "127.0.0.1", family: 4 }, { address: "169.254.169.254", family: 4 }],
      [{ address: "::ffff:169.254.169.254", family: 6 }],
      [{ address: "fe80::1", family: 6 }],
    ] as ResolvedAddress[][]) {
      const resolve = scripted(answer);
      const outcome = await attempt(`http://two-faced.invalid:${receiver.port}/`, resolve);
      expect(outcome.kind).toBe("refused");
      expect((outcome as { reason: string }).reason).toContain("two-faced.invalid resolves to");
      expect(resolve.calls).toHaveLength(1);
    }
    expect(receiver.received.length).toBe(before);
  });

  test("a name that resolves to loopback is refused when private targets are not allowed", async () => {
    const outcome = await attempt(`http://inside.invalid:${receiver.port}/`, scripted([{ address: "127.0.0.1", family: 4 }]), false);
    expect(outcome.kind).toBe("refused");
    expect((outcome as { reason: string }).reason).toContain("loopback");
  });

  test("a name that does not resolve is unreachable (retried), not refused", async () => {
    const failing: Resolver = async () => {
      throw Object.assign(new Error("getaddrinfo ENOTFOUND"), { code: "ENOTFOUND" });
    };
    const outcome = await attempt("http://nowhere.invalid/", failing);
    expect(outcome.kind).toBe("unreachable");
    expect((outcome as { reason: string }).reason).toContain("ENOTFOUND");
  });

  test("a literal address is not looked up at all", async () => {
    const resolve = scripted([{ address: "169.254.169.254", family: 4 }]);
    const outcome = await attempt(`${receiver.url}/literal`, resolve);
    expect(outcome).toMatchObject({ kind: "answered", ok: true });
    expect(resolve.calls).toEqual([]);
  });
});

describe("a server that does not allow private targets (the serve default)", () => {
  let server: TestServer;
  let receiver: Receiver;
  beforeAll(async () => {
    server = await startTestServer({
      workflows: [workflow("net-echo", () => ({ ok: true }))],
      env: { ...FAST_ENV, UNDERSTUDY_WEBHOOK_RETRY_SCHEDULE_MS: "0,20,20" },
    });
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await receiver.close();
    await server.close();
  });

  test("a literal loopback or private URL is a 400 that says how to allow it", async () => {
    const { key } = await addTenant(server, uniqueName("net"));
    for (const url of [receiver.url, `http://[::1]:${receiver.port}/`, "http://10.0.0.7/hook", "http://[::ffff:127.0.0.1]/", "http://192.168.1.20/"]) {
      const error = expectError(await server.post("/v1/webhooks/create", { url }, { key }), 400, "BAD_REQUEST", false);
      expect(error.data.issues[0].path).toEqual(["url"]);
      expect(error.message).toContain("UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE=1");
    }
    expect(expectOk(await server.post("/v1/webhooks/list", {}, { key }), false).webhook_endpoints).toEqual([]);
  });

  test("a host name that resolves to loopback is accepted at create, and its delivery fails with the reason; nothing is sent", async () => {
    const { key } = await addTenant(server, uniqueName("net"));
    await createEndpoint(server, key, { url: `http://localhost:${receiver.port}/hook` });
    const jobId = await createJob(server, { workflow: "net-echo" }, key);
    await waitForEnd(server, jobId, key);
    const [delivery] = await waitForSettled(server, key, { job_id: jobId });
    expect(delivery).toMatchObject({ status: "failed", attempts: 1, last_status_code: null });
    expect(delivery.last_error).toContain("localhost resolves to");
    expect(delivery.last_error).toContain("loopback");
    expect(delivery.last_error).toContain("UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE=1");
    expect(receiver.received).toEqual([]);
  });
});
