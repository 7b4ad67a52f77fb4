/** @jsxImportSource hono/jsx */
import type { Mount } from "../server";

export function workflowPages(_mount: Mount): void {}
