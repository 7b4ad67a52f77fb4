/**
 * playwright-core, as the compiled binary's second entry point
 * (scripts/build.ts): the binary embeds it as a module of its own, and every
 * `import("playwright-core")` or `require("playwright-core")` elsewhere loads
 * this file at run time. A server that never starts a browser then never
 * evaluates the package's 7 MB of code (measured: idle RSS 77.5 -> 75.7 MB;
 * Bun still reads part of the embedded module at start).
 */
export * from "playwright-core";
