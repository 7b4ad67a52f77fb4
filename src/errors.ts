/**
 * The one error vocabulary of Understudy. Every failure a client can see is an
 * AppError with a code from ErrorCode; anything else is a bug and is rendered
 * as a generic 500 whose detail stays in the server log.
 *
 * REQUEST_TIMEOUT, REQUEST_HEADER_FIELDS_TOO_LARGE and HTTP_VERSION_NOT_SUPPORTED
 * come from the HTTP parser, not from a route: see src/server/listen.ts.
 */
export const ERROR_CODES = [
  "BAD_REQUEST",
  "UNAUTHORIZED",
  "NOT_FOUND",
  "METHOD_NOT_ALLOWED",
  "REQUEST_TIMEOUT",
  "CONFLICT",
  "PAYLOAD_TOO_LARGE",
  "REQUEST_HEADER_FIELDS_TOO_LARGE",
  "TOO_MANY_REQUESTS",
  "INTERNAL_SERVER_ERROR",
  "HTTP_VERSION_NOT_SUPPORTED",
  "SERVICE_UNAVAILABLE",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function statusOf(code: ErrorCode): 400 | 401 | 404 | 405 | 408 | 409 | 413 | 429 | 431 | 500 | 503 | 505 {
  switch (code) {
    case "BAD_REQUEST":
      return 400;
    case "UNAUTHORIZED":
      return 401;
    case "NOT_FOUND":
      return 404;
    case "METHOD_NOT_ALLOWED":
      return 405;
    case "REQUEST_TIMEOUT":
      return 408;
    case "CONFLICT":
      return 409;
    case "PAYLOAD_TOO_LARGE":
      return 413;
    case "REQUEST_HEADER_FIELDS_TOO_LARGE":
      return 431;
    case "TOO_MANY_REQUESTS":
      return 429;
    case "INTERNAL_SERVER_ERROR":
      return 500;
    case "SERVICE_UNAVAILABLE":
      return 503;
    case "HTTP_VERSION_NOT_SUPPORTED":
      return 505;
  }
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown>;
  /** Response headers the error needs (e.g. Retry-After). */
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { data?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = "AppError";
    this.code = code;
    this.data = options.data ?? {};
    this.headers = options.headers ?? {};
  }

  get status(): number {
    return statusOf(this.code);
  }
}

/** An error that stops a command or start-up: printed as is, exit code 1. */
export class FatalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FatalError";
  }
}
