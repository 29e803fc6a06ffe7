// A minimal typed event emitter whose listeners cannot break the emitter.

// Listeners of every event share one set type; `on` and `emit` keep them typed.
type AnyListener = (...args: any[]) => void;

/** Calls listeners by event name; `on` returns the function that removes the listener. */
export class Emitter<M extends { [K in keyof M]: unknown[] }> {
  private readonly listeners = new Map<keyof M, Set<AnyListener>>();

  on<K extends keyof M>(event: K, listener: (...args: M[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  emit<K extends keyof M>(event: K, ...args: M[K]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) call(listener, ...args);
  }
}

/**
 * Calls an application callback. Its exception is rethrown outside the client's own code (as
 * an uncaught error, like an exception in a DOM event listener) so that the client's state
 * stays consistent and the other listeners still run.
 */
export function call<A extends unknown[]>(callback: ((...args: A) => void) | undefined, ...args: A): void {
  try {
    callback?.(...args);
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}
