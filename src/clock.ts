/** Time and ids are injected so tests can control them (STYLE.md rule 7). */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export type IdSource = () => string;

export const randomId: IdSource = () => crypto.randomUUID();
