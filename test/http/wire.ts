import { expect } from "bun:test";
import type { TestResponse } from "../helpers";

/** The error body of the wire contract (API.md), unwrapped from `{"json": ...}` when the request was enveloped. */
export interface WireError {
  defined: false;
  success: false;
  code: string;
  status: number;
  message: string;
  data: Record<string, any>;
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
export const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Wraps an input as the libretto CLI sends it. */
export const envelop = (input: unknown, meta?: unknown) => (meta === undefined ? { json: input } : { json: input, meta });

/**
 * Asserts a success response in the form that mirrors the request and returns
 * the output: `{"json": output}` for an enveloped request, `output` for a plain one.
 */
export function expectOk(response: TestResponse, enveloped: boolean): any {
  if (response.status !== 200) throw new Error(`expected 200, got ${response.status}: ${response.text}`);
  expect(response.headers.get("content-type") ?? "").toContain("application/json");
  if (!enveloped) {
    expect(response.body).not.toHaveProperty("json");
    return response.body;
  }
  expect(Object.keys(response.body)).toEqual(["json"]);
  return response.body.json;
}

/**
 * Asserts an error response of the contract, in the form that mirrors the
 * request, with exactly the six fields of the error body; returns the body.
 */
export function expectError(response: TestResponse, status: number, code: string, enveloped: boolean): WireError {
  if (response.status !== status) throw new Error(`expected ${status} ${code}, got ${response.status}: ${response.text}`);
  expect(response.headers.get("content-type") ?? "").toContain("application/json");
  let error: any = response.body;
  if (enveloped) {
    expect(Object.keys(response.body)).toEqual(["json"]);
    error = response.body.json;
  }
  expect(Object.keys(error).sort()).toEqual(["code", "data", "defined", "message", "status", "success"]);
  expect(error.defined).toBe(false);
  expect(error.success).toBe(false);
  expect(error.code).toBe(code);
  expect(error.status).toBe(status);
  expect(typeof error.message).toBe("string");
  // The libretto CLI prints the message: it must be a sentence, not a code or a blank.
  expect(error.message.length).toBeGreaterThan(8);
  expect(typeof error.data).toBe("object");
  expect(error.data).not.toBeNull();
  expect(Array.isArray(error.data)).toBe(false);
  return error as WireError;
}

/** A 400 with zod issues in `data.issues`, each with `path` (array) and `message`. Returns the issues. */
export function expectValidationError(response: TestResponse, enveloped: boolean): { path: string[]; message: string }[] {
  const error = expectError(response, 400, "BAD_REQUEST", enveloped);
  const issues = error.data.issues;
  expect(Array.isArray(issues)).toBe(true);
  expect(issues.length).toBeGreaterThan(0);
  for (const issue of issues) {
    expect(Array.isArray(issue.path)).toBe(true);
    expect(typeof issue.message).toBe("string");
    expect(issue.message.length).toBeGreaterThan(0);
  }
  return issues;
}

export function expectUnauthorized(response: TestResponse, enveloped: boolean): void {
  const error = expectError(response, 401, "UNAUTHORIZED", enveloped);
  expect(error.message).toBe("Invalid API key");
}
