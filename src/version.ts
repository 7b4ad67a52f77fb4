import pkg from "../package.json" with { type: "json" };

/** Set at build time by scripts/build.ts (`--define`); "dev" when run from source. */
declare const UNDERSTUDY_COMMIT: string | undefined;

export const VERSION: string = pkg.version;
export const COMMIT: string = typeof UNDERSTUDY_COMMIT === "string" ? UNDERSTUDY_COMMIT : "dev";
export const VERSION_STRING = `understudy ${VERSION} (${COMMIT})`;
