/** @jsxImportSource hono/jsx */
import type { Mount } from "../server";

export function jobPages(_mount: Mount): void {}
