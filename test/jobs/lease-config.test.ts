import { expect, test } from "bun:test";
import { loadConfig } from "../../src/config";
import { FatalError } from "../../src/errors";

const refusal = (value: string) => {
  try {
    loadConfig({ UNDERSTUDY_JOB_LEASE_MS: value });
  } catch (error) {
    expect(error).toBeInstanceOf(FatalError);
    return (error as Error).message;
  }
  throw new Error("expected the configuration to be refused");
};

test("UNDERSTUDY_JOB_LEASE_MS: 15 s by default, a value taken as given, a bad one refused by name", () => {
  expect(loadConfig({}).jobs.leaseMs).toBe(15_000);
  expect(loadConfig({ UNDERSTUDY_JOB_LEASE_MS: "3000" }).jobs.leaseMs).toBe(3000);
  for (const bad of ["0", "-5", "abc", "100", "99999999"]) expect(refusal(bad)).toContain("UNDERSTUDY_JOB_LEASE_MS");
  expect(refusal("100")).toContain("at least 300");
});
