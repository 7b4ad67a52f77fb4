import { describe, expect, test } from "bun:test";
import { loadConfig, takeEnvironment } from "../src/config";
import { FatalError } from "../src/errors";
import { masterKeyId } from "../src/vault/master-key";
import { newMasterKey } from "./helpers";

function problems(env: Record<string, string>): string {
  try {
    loadConfig(env, () => {
      throw Object.assign(new Error("no"), { code: "ENOENT" });
    });
  } catch (error) {
    expect(error).toBeInstanceOf(FatalError);
    return (error as Error).message;
  }
  throw new Error("expected the configuration to be refused");
}

describe("loadConfig", () => {
  test("defaults", () => {
    const config = loadConfig({});
    expect(config.listen).toEqual({ hostname: "127.0.0.1", port: 8787 });
    expect(config.maxBodyBytes).toBe(1024 * 1024);
    expect(config.maxValueBytes).toBe(64 * 1024);
    expect(config.rateLimit.perSecond).toBeGreaterThan(0);
    expect(config.masterKey).toBeUndefined();
    expect(Object.isFrozen(config)).toBe(true);
  });

  test("reads every variable", () => {
    const key = newMasterKey();
    const previous = newMasterKey();
    const config = loadConfig({
      UNDERSTUDY_LISTEN: "[::1]:9000",
      UNDERSTUDY_DB: "/tmp/x.db",
      UNDERSTUDY_MASTER_KEY: key.text,
      UNDERSTUDY_MASTER_KEY_PREVIOUS_FILE: "/run/secrets/old",
      UNDERSTUDY_MAX_BODY_BYTES: "2048",
      UNDERSTUDY_MAX_VALUE_BYTES: "1024",
      UNDERSTUDY_RATE_LIMIT_PER_SECOND: "0",
      UNDERSTUDY_RATE_LIMIT_BURST: "5",
      UNDERSTUDY_REQUEST_LOG: "off",
      UNDERSTUDY_DB_SYNCHRONOUS: "full",
    }, (path) => (path === "/run/secrets/old" ? `${previous.text}\n` : ""));
    expect(config.listen).toEqual({ hostname: "::1", port: 9000 });
    expect(config.dbPath).toBe("/tmp/x.db");
    expect(masterKeyId(config.masterKey!)).toBe(masterKeyId(key.bytes));
    expect(masterKeyId(config.masterKeyPrevious!)).toBe(masterKeyId(previous.bytes));
    expect(config.maxBodyBytes).toBe(2048);
    expect(config.rateLimit).toEqual({ perSecond: 0, burst: 5 });
    expect(config.requestLog).toBe(false);
    expect(config.dbSynchronous).toBe("full");
  });

  test("all bad variables are reported at once, by name", () => {
    const message = problems({
      UNDERSTUDY_LISTEN: "8787",
      UNDERSTUDY_MAX_VALUE_BYTES: "0",
      UNDERSTUDY_REQUEST_LOG: "maybe",
      UNDERSTUDY_DB_SYNCHRONOUS: "sometimes",
      UNDERSTUDY_MASTER_KEY_FILE: "/missing",
    });
    for (const name of ["UNDERSTUDY_LISTEN", "UNDERSTUDY_MAX_VALUE_BYTES", "UNDERSTUDY_REQUEST_LOG", "UNDERSTUDY_DB_SYNCHRONOUS", "UNDERSTUDY_MASTER_KEY_FILE"]) {
      expect(message).toContain(name);
    }
    expect(message).toContain("ENOENT");
  });

  test("artifacts and retention: defaults, values, and bad values by name", () => {
    expect(loadConfig({}).artifacts).toEqual({
      screenshots: "always",
      maxBytes: 20 * 1024 * 1024,
      retentionDays: 7,
      maxBytesPerTenant: 1024 ** 3,
      logRetentionDays: 30,
      deliveryRetentionDays: 30,
      pruneIntervalMs: 3_600_000,
    });
    const set = loadConfig({
      UNDERSTUDY_SCREENSHOTS: "failure",
      UNDERSTUDY_ARTIFACT_RETENTION_DAYS: "0",
      UNDERSTUDY_ARTIFACT_MAX_BYTES_PER_TENANT: "0",
      UNDERSTUDY_LOG_RETENTION_DAYS: "3",
      UNDERSTUDY_DELIVERY_RETENTION_DAYS: "4",
    }).artifacts;
    expect(set).toMatchObject({ screenshots: "failure", retentionDays: 0, maxBytesPerTenant: 0, logRetentionDays: 3, deliveryRetentionDays: 4 });
    const message = problems({ UNDERSTUDY_SCREENSHOTS: "sometimes", UNDERSTUDY_ARTIFACT_MAX_BYTES: String(64 * 1024 * 1024), UNDERSTUDY_LOG_RETENTION_DAYS: "-1" });
    for (const name of ["UNDERSTUDY_SCREENSHOTS", "UNDERSTUDY_ARTIFACT_MAX_BYTES", "UNDERSTUDY_LOG_RETENTION_DAYS"]) expect(message).toContain(name);
  });

  test("a bad master key is described, never echoed", () => {
    const secretish = "not base64 but secret!!";
    const message = problems({ UNDERSTUDY_MASTER_KEY: secretish });
    expect(message).toContain("UNDERSTUDY_MASTER_KEY is not base64");
    expect(message).not.toContain(secretish);
    const short = Buffer.from("sixteen byte key").toString("base64");
    const shortMessage = problems({ UNDERSTUDY_MASTER_KEY: short });
    expect(shortMessage).toContain("decodes to 16 bytes");
    expect(shortMessage).not.toContain(short);
  });

  test("the previous key must differ from the current one", () => {
    const key = newMasterKey();
    expect(problems({ UNDERSTUDY_MASTER_KEY: key.text, UNDERSTUDY_MASTER_KEY_PREVIOUS: key.text })).toContain("same key");
  });
});

test("takeEnvironment keeps a snapshot and removes the key material from the live environment", () => {
  const key = newMasterKey();
  const live: Record<string, string | undefined> = {
    UNDERSTUDY_MASTER_KEY: key.text,
    UNDERSTUDY_MASTER_KEY_PREVIOUS: "old",
    UNDERSTUDY_LISTEN: "127.0.0.1:1",
  };
  const snapshot = takeEnvironment(live);
  expect(snapshot.UNDERSTUDY_MASTER_KEY).toBe(key.text);
  expect(live).toEqual({ UNDERSTUDY_LISTEN: "127.0.0.1:1" });
});

test("ids are RFC 9562 version 7 UUIDs, ordered by time", async () => {
  const { randomId, uuidV7 } = await import("../src/clock");
  const id = randomId();
  expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  expect(uuidV7(1_000) < uuidV7(2_000)).toBe(true);
  expect(uuidV7(Date.UTC(2026, 10, 26)).slice(0, 13)).toBe(`${Date.UTC(2026, 10, 26).toString(16).padStart(12, "0").slice(0, 8)}-${Date.UTC(2026, 10, 26).toString(16).padStart(12, "0").slice(8)}`);
});
