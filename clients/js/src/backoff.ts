// Full-jitter exponential backoff (docs/PROTOCOL.md "Reconnecting", step 1).

/** Delays before reconnecting: random in [0, min(cap, base × 2ⁿ)] after n failed attempts. */
export class Backoff {
  /** Failed attempts since the last reset: the n of the next delay. */
  attempts = 0;

  /**
   * @param base the first delay's upper bound, in ms
   * @param cap the largest upper bound, in ms
   * @param random a number in [0, 1) (`Math.random`; tests pass their own)
   */
  constructor(
    readonly base: number,
    readonly cap: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt, in ms; each call counts one more failed attempt. */
  next(): number {
    // 2 ** attempts overflows to Infinity long after the cap is reached; min keeps it bounded.
    const bound = Math.min(this.cap, this.base * 2 ** this.attempts);
    this.attempts += 1;
    return this.random() * bound;
  }

  /** Starts over from the first delay (after a connection that stayed up). */
  reset(): void {
    this.attempts = 0;
  }
}
