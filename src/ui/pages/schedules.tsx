/** @jsxImportSource hono/jsx */
import type { Mount } from "../server";

export function schedulePages(_mount: Mount): void {}
