/** @jsxImportSource hono/jsx */
import type { Mount } from "../server";

export function webhookPages(_mount: Mount): void {}
