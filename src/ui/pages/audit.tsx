/** @jsxImportSource hono/jsx */
import type { Mount } from "../server";

export function auditPages(_mount: Mount): void {}
