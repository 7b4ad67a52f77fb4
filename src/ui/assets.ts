import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { dashboardClient } from "./client";
import { STYLESHEET } from "./style";

/**
 * The dashboard's static files, built in memory from the source at start
 * (so they are inside the compiled binary and the Node bundle, and nothing
 * is fetched from anywhere). Each name carries a hash of its content, so a
 * browser may keep it forever; each is gzip'd once.
 */
export interface Asset {
  path: string;
  contentType: string;
  body: Buffer;
  gzip: Buffer;
}

function asset(name: string, ext: string, contentType: string, text: string): Asset {
  const body = Buffer.from(text);
  const hash = createHash("sha256").update(body).digest("hex").slice(0, 12);
  return { path: `/ui/assets/${name}.${hash}.${ext}`, contentType, body, gzip: gzipSync(body, { level: 9 }) };
}

export const script = asset("app", "js", "text/javascript; charset=utf-8", `"use strict";(${dashboardClient.toString()})();\n`);
export const stylesheet = asset("style", "css", "text/css; charset=utf-8", STYLESHEET.trim() + "\n");
/** A favicon of our own, so the browser does not ask for /favicon.ico. */
export const icon = asset(
  "icon",
  "svg",
  "image/svg+xml",
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#0b5cad"/><path d="M9 8v10a7 7 0 0 0 14 0V8h-4v10a3 3 0 0 1-6 0V8z" fill="#fff"/></svg>`,
);
export const assets = new Map<string, Asset>([script, stylesheet, icon].map((a) => [a.path, a]));
