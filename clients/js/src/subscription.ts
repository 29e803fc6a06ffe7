// One topic subscription: its stream position, recovery after reconnects and gaps, members.

import { call } from "./emitter.js";
import type { RequestError } from "./errors.js";

/** A topic member as the server describes it (`info` is what the server exposes). */
export interface Member<I = unknown> {
  id: string;
  info?: I;
}

/** Where a publication sits in its topic's stream; absent on topics without history. */
export interface Position {
  epoch?: string;
  offset?: number;
}

/** A publication as a subscribe reply lists it. */
export interface Publication<T = unknown> {
  offset: number;
  data: T;
}

/** What the `subscribed` handler learns from each subscribe reply. */
export interface Subscribed<T = unknown> {
  /**
   * After a reconnect or a gap (a subscribe `since` the last position): whether the
   * publications that follow are **all** that was missed. `false`: some are lost for good, the
   * application must refetch the topic's state by other means. `undefined` on the first
   * subscribe and on topics without history.
   */
  recovered?: boolean;
  /** False for the first subscribe, true for every later one (reconnects, gaps, epoch changes). */
  resubscribed: boolean;
  /** The stream position after the publications below (topics with history). */
  epoch?: string;
  offset?: number;
  /** The members (topics with presence); `subscription.members` already holds them. */
  members?: Member[];
  /** The publications of the reply not seen before, oldest first; each is also delivered to
   * the `publication` handler right after this call. */
  publications: Publication<T>[];
}

/** What a subscription calls; every handler is optional. */
export interface SubscriptionHandlers<T = unknown> {
  /** A publication, in stream order, each once (on topics with history). */
  publication?(data: T, position: Position): void;
  /** Each subscribe reply: the first one, and one after every reconnect or catch-up. */
  subscribed?(info: Subscribed<T>): void;
  /** Someone subscribed (topics with presence). */
  join?(member: Member): void;
  /** Someone left (unsubscribed or disconnected). */
  leave?(member: Member): void;
  /** The server refused the subscription (`forbidden`, `too many topics`, …: it is over, the
   * state is `unsubscribed`), or a subscribe timed out (it is tried again at once). */
  error?(error: RequestError): void;
}

/** Options of `client.subscribe`. */
export interface SubscribeOptions {
  /** On the first subscribe, ask for up to this many of the latest publications. */
  history?: number;
}

/** What a subscription needs from its client. */
export interface SubscriptionHost {
  /** Whether the client is connected (requests can go out now). */
  connected(): boolean;
  /** Sends a request now; `done` gets the error, or the reply's data. */
  ask(type: string, data: unknown, done: (error: RequestError | undefined, reply?: unknown) => void): void;
  /** Forgets the subscription: after `unsubscribe()`, or a refusal. */
  forget(subscription: Subscription<never>): void;
}

/** The reply to `subscribe` (docs/PROTOCOL.md "subscribe"). */
interface SubscribeReply {
  epoch?: string;
  offset?: number;
  recovered?: boolean;
  publications?: Publication[];
  members?: Member[];
}

/** A `pub` envelope's data. */
interface Pub {
  epoch?: string;
  offset?: number;
  data: unknown;
}

/**
 * A subscription to one topic, made by `client.subscribe`. It lasts until `unsubscribe()` or
 * a refusal: after every reconnect the client subscribes again `since` the last position, and
 * the handlers see each publication once, in order, or a `subscribed` with `recovered: false`.
 */
export class Subscription<T = unknown> {
  private current: "subscribing" | "subscribed" | "unsubscribed" = "subscribing";
  private lastRecovered: boolean | undefined;
  private epoch: string | undefined;
  /** The offset of the last publication delivered (or skipped as known) in `epoch`. */
  private offset = 0;
  private readonly memberMap = new Map<string, Member>();
  private replies = 0;
  /** Numbers each subscribe sent, so that the answer of an abandoned one is ignored. */
  private asked = 0;
  private inFlight = false;

  /** Made by `client.subscribe`. */
  constructor(
    readonly topic: string,
    private readonly handlers: SubscriptionHandlers<T>,
    private readonly options: SubscribeOptions,
    private readonly host: SubscriptionHost,
  ) {}

  /** `subscribing` until a reply is in (again after each reconnect), `unsubscribed` at the end. */
  get state(): "subscribing" | "subscribed" | "unsubscribed" {
    return this.current;
  }

  /** The last reply's `recovered` (see `Subscribed.recovered`). */
  get recovered(): boolean | undefined {
    return this.lastRecovered;
  }

  /** The current members (topics with presence): the last reply's, kept up by join/leave. */
  get members(): Member[] {
    return [...this.memberMap.values()];
  }

  /** The position of the last publication seen (topics with history), for resuming. */
  get position(): Required<Position> | undefined {
    return this.epoch === undefined ? undefined : { epoch: this.epoch, offset: this.offset };
  }

  /** Leaves the topic; resolves once the server confirmed it (at once when offline). */
  unsubscribe(): Promise<void> {
    if (this.state === "unsubscribed") return Promise.resolve();
    this.end();
    if (!this.host.connected()) return Promise.resolve();
    return new Promise((resolve) => this.host.ask("unsubscribe", { topic: this.topic }, () => resolve()));
  }

  /** Asks the server for the current member list (and keeps it as `members`). */
  presence(): Promise<Member[]> {
    return new Promise((resolve, reject) =>
      this.host.ask("presence", { topic: this.topic }, (error, reply) => {
        if (error) return reject(error);
        this.setMembers((reply as { members?: Member[] }).members ?? []);
        resolve(this.members);
      }),
    );
  }

  /** @internal Sends a subscribe (`since` the last position, if any) unless one is out. */
  subscribe(): void {
    if (this.inFlight || this.state === "unsubscribed" || !this.host.connected()) return;
    this.current = "subscribing";
    this.inFlight = true;
    const since = this.position;
    const request = since
      ? { topic: this.topic, since }
      : { topic: this.topic, history: this.options.history };
    const asked = ++this.asked;
    this.host.ask("subscribe", request, (error, reply) => {
      if (asked !== this.asked || this.state === "unsubscribed") return;
      this.inFlight = false;
      if (!error) return this.apply(reply as SubscribeReply, since !== undefined);
      if (error.reason === "disconnected") return; // subscribed again after the reconnect
      if (error.remote) this.end();
      call(this.handlers.error, error);
      this.subscribe(); // after a timeout; does nothing after a refusal
    });
  }

  /** @internal The connection was lost: the next connection subscribes again. */
  disconnected(): void {
    if (this.state === "unsubscribed") return;
    this.current = "subscribing";
    this.inFlight = false;
    this.asked += 1;
  }

  /** @internal A `pub`, `join` or `leave` envelope's data for this topic. */
  receive(type: string, data: Record<string, unknown>): void {
    if (this.state === "unsubscribed") return;
    if (type === "pub") return this.publication(data as unknown as Pub);
    const member = data.member as Member;
    if (type === "join") {
      this.memberMap.set(member.id, member);
      call(this.handlers.join, member);
    } else {
      this.memberMap.delete(member.id);
      call(this.handlers.leave, member);
    }
  }

  private publication(pub: Pub): void {
    const { epoch, offset } = pub;
    // Topics without history promise no order or completeness: deliver as it comes.
    if (offset === undefined) return call(this.handlers.publication, pub.data as T, {});
    // While a subscribe is out, its reply lists everything up to its position; the live
    // publications after it follow the reply.
    if (this.state !== "subscribed") return;
    if (epoch !== this.epoch || offset > this.offset + 1) {
      // The stream restarted under us, or something was dropped on the way (the server's
      // queue for us overflowed): ask again from the last position seen.
      return this.subscribe();
    }
    if (offset <= this.offset) return; // seen already
    this.offset = offset;
    call(this.handlers.publication, pub.data as T, { epoch, offset });
  }

  private apply(reply: SubscribeReply, withSince: boolean): void {
    const publications = reply.publications ?? [];
    if (reply.epoch !== this.epoch) {
      // A first position, or a new epoch, whose offsets count from 1 again.
      this.offset = publications.length > 0 ? publications[0]!.offset - 1 : (reply.offset ?? 0);
    }
    this.epoch = reply.epoch;
    this.lastRecovered = withSince ? reply.recovered : undefined;
    if (reply.members) this.setMembers(reply.members);
    this.current = "subscribed";
    const fresh = publications.filter((publication) => publication.offset > this.offset) as Publication<T>[];
    call(this.handlers.subscribed, {
      recovered: this.recovered,
      resubscribed: this.replies++ > 0,
      epoch: reply.epoch,
      offset: reply.offset,
      members: reply.members,
      publications: fresh,
    });
    for (const { offset, data } of fresh) {
      if (!this.isSubscribed()) return; // a handler unsubscribed, or the client was closed
      this.offset = offset;
      call(this.handlers.publication, data as T, { epoch: this.epoch, offset });
    }
    this.offset = Math.max(this.offset, reply.offset ?? 0);
  }

  private isSubscribed(): boolean {
    return this.state === "subscribed";
  }

  private setMembers(members: Member[]): void {
    this.memberMap.clear();
    for (const member of members) this.memberMap.set(member.id, member);
  }

  private end(): void {
    this.current = "unsubscribed";
    this.asked += 1;
    this.host.forget(this as Subscription<never>);
  }
}
