import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { AppError } from "../errors";

/**
 * Where a webhook may go. A target address is one of:
 * - forbidden: never a webhook target, whatever the configuration: link-local
 *   (169.254.0.0/16, where cloud metadata services answer, and fe80::/10),
 *   unspecified (0.0.0.0/8, ::), multicast, broadcast and reserved ranges;
 * - private: loopback, RFC 1918, carrier-grade NAT (100.64.0.0/10), IPv6
 *   unique-local and site-local: allowed only with UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE
 *   (on in dev mode);
 * - public: everything else.
 * An IPv6 address that carries an IPv4 address (IPv4-mapped ::ffff:a.b.c.d,
 * IPv4-compatible ::a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d, NAT64
 * 64:ff9b::/96, 6to4 2002::/16) is judged by the IPv4 address it carries, so
 * [::ffff:169.254.169.254] is as forbidden as 169.254.169.254.
 */
export type AddressClass = { kind: "public" } | { kind: "private"; what: string } | { kind: "forbidden"; what: string };

const PUBLIC: AddressClass = { kind: "public" };

/** Classifies an IP address (v4 or v6, without brackets); anything that is not an IP address is forbidden. */
export function classifyAddress(address: string): AddressClass {
  const v4 = parseIPv4(address);
  if (v4) return classifyIPv4(v4);
  const v6 = parseIPv6(address);
  if (v6) return classifyIPv6(v6);
  return { kind: "forbidden", what: "not an IP address" };
}

function classifyIPv4(bytes: number[]): AddressClass {
  const [a, b] = bytes as [number, number];
  if (a === 0) return { kind: "forbidden", what: "an unspecified address (0.0.0.0/8)" };
  if (a === 169 && b === 254) return { kind: "forbidden", what: "a link-local address (169.254.0.0/16, where cloud metadata services answer)" };
  if (a >= 224 && a <= 239) return { kind: "forbidden", what: "a multicast address (224.0.0.0/4)" };
  if (a >= 240) return { kind: "forbidden", what: "a reserved or broadcast address (240.0.0.0/4)" };
  if (a === 127) return { kind: "private", what: "a loopback address (127.0.0.0/8)" };
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) {
    return { kind: "private", what: "a private address (RFC 1918)" };
  }
  if (a === 100 && b >= 64 && b <= 127) return { kind: "private", what: "a shared address (carrier-grade NAT, 100.64.0.0/10)" };
  return PUBLIC;
}

function classifyIPv6(g: number[]): AddressClass {
  const zeroUpTo = (n: number) => g.slice(0, n).every((x) => x === 0);
  const embedded = (hi: number, lo: number) => [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff];
  const carried = (form: string, v4: number[]): AddressClass => {
    const inner = classifyIPv4(v4);
    return inner.kind === "public" ? inner : { kind: inner.kind, what: `${inner.what}, in ${form} form` };
  };
  if (zeroUpTo(8)) return { kind: "forbidden", what: "the unspecified address (::)" };
  if (zeroUpTo(7) && g[7] === 1) return { kind: "private", what: "the loopback address (::1)" };
  if (zeroUpTo(5) && g[5] === 0xffff) return carried("IPv4-mapped IPv6", embedded(g[6]!, g[7]!));
  if (zeroUpTo(4) && g[4] === 0xffff && g[5] === 0) return carried("IPv4-translated IPv6", embedded(g[6]!, g[7]!));
  if (zeroUpTo(6)) return carried("IPv4-compatible IPv6", embedded(g[6]!, g[7]!));
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0)) return carried("NAT64 IPv6", embedded(g[6]!, g[7]!));
  if (g[0] === 0x2002) return carried("6to4 IPv6", embedded(g[1]!, g[2]!));
  if ((g[0]! & 0xffc0) === 0xfe80) return { kind: "forbidden", what: "a link-local address (fe80::/10)" };
  if ((g[0]! & 0xff00) === 0xff00) return { kind: "forbidden", what: "a multicast address (ff00::/8)" };
  if ((g[0]! & 0xfe00) === 0xfc00) return { kind: "private", what: "a unique-local address (fc00::/7)" };
  if ((g[0]! & 0xffc0) === 0xfec0) return { kind: "private", what: "a site-local address (fec0::/10)" };
  return PUBLIC;
}

function parseIPv4(text: string): number[] | undefined {
  if (isIP(text) !== 4) return undefined;
  return text.split(".").map(Number);
}

/** The eight 16-bit groups of an IPv6 address (a zone id is dropped), or undefined. */
function parseIPv6(text: string): number[] | undefined {
  const address = text.split("%")[0]!;
  if (isIP(address) !== 6) return undefined;
  let tail: number[] = [];
  let head = address;
  // A dotted IPv4 tail (::ffff:169.254.169.254) is two groups.
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (dotted) {
    const v4 = parseIPv4(dotted[2]!);
    if (!v4) return undefined;
    head = dotted[1]!.endsWith("::") ? dotted[1]! : dotted[1]!.slice(0, -1);
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
  }
  const groups = (part: string) => (part === "" ? [] : part.split(":").map((h) => parseInt(h, 16)));
  const halves = head.split("::");
  let all: number[];
  if (halves.length === 2) {
    const left = groups(halves[0]!);
    const right = [...groups(halves[1]!), ...tail];
    all = [...left, ...new Array(8 - left.length - right.length).fill(0), ...right];
  } else {
    all = [...groups(head), ...tail];
  }
  return all.length === 8 && all.every((x) => Number.isInteger(x) && x >= 0 && x <= 0xffff) ? all : undefined;
}

/** The IP address a URL's host is written as (brackets removed), or undefined for a host name. */
export function literalAddressOf(hostname: string): string | undefined {
  const bare = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  return isIP(bare.split("%")[0]!) ? bare : undefined;
}

/** Why an address may not be a webhook target. */
export interface Refusal {
  address: string;
  /** What the address is, e.g. "a loopback address (127.0.0.0/8)". */
  what: string;
  /** What follows for the target. */
  remedy: string;
}

/** Why an address may not be a target under this policy, or undefined when it may. */
export function refusalOf(address: string, allowPrivate: boolean): Refusal | undefined {
  const found = classifyAddress(address);
  if (found.kind === "forbidden") return { address, what: found.what, remedy: "webhooks are never sent there" };
  if (found.kind === "private" && !allowPrivate) {
    return {
      address,
      what: found.what,
      remedy: "webhook targets on loopback and private networks need UNDERSTUDY_WEBHOOK_ALLOW_PRIVATE=1 on the server",
    };
  }
  return undefined;
}

/** The refusal as a phrase: "169.254.169.254 is ...", or "name resolves to 127.0.0.1, ...". */
export function describeRefusal(refusal: Refusal, hostname?: string): string {
  return hostname === undefined
    ? `${refusal.address} is ${refusal.what}; ${refusal.remedy}`
    : `${hostname} resolves to ${refusal.address}, ${refusal.what}; ${refusal.remedy}`;
}

/**
 * A 400 at once for a target URL whose host is written as a refused IP
 * address (webhook endpoints, and a job's or schedule's callback_url). A host
 * name is checked at every attempt, after it is resolved, since the answer
 * can change; a refusal then fails the delivery.
 */
export function refuseLiteralTarget(url: string, allowPrivate: boolean, field: string): void {
  const literal = literalAddressOf(new URL(url).hostname);
  const found = literal === undefined ? undefined : refusalOf(literal, allowPrivate);
  if (found) {
    const refusal = describeRefusal(found);
    throw new AppError("BAD_REQUEST", `Invalid input: ${field} is refused: ${refusal}.`, {
      data: { issues: [{ path: [field], message: `is refused: ${refusal}` }] },
    });
  }
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to every address it has (A and AAAA). Injected in tests. */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (hostname) => {
  const found = await lookup(hostname, { all: true, verbatim: true });
  return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

export type TargetCheck =
  | { ok: true; address: string; family: 4 | 6 }
  /** Refused by policy: the same answer would come next time, so it is not retried. */
  | { ok: false; refused: true; reason: string }
  /** The name did not resolve: may work later. */
  | { ok: false; refused: false; reason: string };

/**
 * Resolves a URL's host once and checks every address it has; the caller
 * connects to the returned address and never looks the name up again, so a
 * second answer (DNS rebinding) cannot send the request somewhere unchecked.
 * A host with one refused address is refused as a whole.
 */
export async function checkTarget(url: URL, allowPrivate: boolean, resolve: Resolver): Promise<TargetCheck> {
  const literal = literalAddressOf(url.hostname);
  if (literal !== undefined) {
    const refusal = refusalOf(literal, allowPrivate);
    if (refusal) return { ok: false, refused: true, reason: `The webhook target was refused: ${describeRefusal(refusal)}.` };
    return { ok: true, address: literal.split("%")[0]!, family: isIP(literal.split("%")[0]!) === 6 ? 6 : 4 };
  }
  let addresses: ResolvedAddress[];
  try {
    addresses = await resolve(url.hostname);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "lookup failed";
    return { ok: false, refused: false, reason: `The host ${url.hostname} did not resolve (${code}).` };
  }
  if (addresses.length === 0) return { ok: false, refused: false, reason: `The host ${url.hostname} has no addresses.` };
  for (const { address } of addresses) {
    const refusal = refusalOf(address, allowPrivate);
    if (refusal) return { ok: false, refused: true, reason: `The webhook target was refused: ${describeRefusal(refusal, url.hostname)}.` };
  }
  return { ok: true, address: addresses[0]!.address, family: addresses[0]!.family };
}
