// Compile-time checks of the public types (`npm run typecheck`; never run): the event maps
// type `on`, `send` and `request`, and `ws`'s WebSocket is accepted as a constructor.

import WebSocket from "ws";

import { Client, RequestError, type Envelope, type Member } from "../../src/index.js";

interface Chat {
  room: string;
  text: string;
  user: string;
}

interface ServerSends {
  chat: Chat;
  welcome: { client_id: string };
}

interface ClientSends {
  say: { room: string; text: string };
  join: { room: string };
}

const client = new Client<ServerSends, ClientSends>("ws://localhost:5000/ws", { WebSocket });

client.on("chat", (data: Chat, envelope: Envelope<Chat>) => {
  const text: string = data.text;
  const from: string | undefined = envelope.from;
  void text;
  void from;
});
// @ts-expect-error: `chat` data has no `missing` field
client.on("chat", (data) => data.missing);
// @ts-expect-error: the server sends no `nope`
client.on("nope", () => {});

client.send("join", { room: "lobby" });
client.send("say", { room: "lobby", text: "hi" }, { target: "123" });
// @ts-expect-error: `join` wants a room
client.send("join", { text: "hi" });

const offset: Promise<{ offset: number }> = client.request<{ offset: number }>("say", { room: "r", text: "t" }, { timeout: 5000 });
void offset;

client.onEvent("disconnected", ({ code, reason, willReconnect, delay }) => {
  const values: [number, string, boolean, number | undefined] = [code, reason, willReconnect, delay];
  void values;
});
client.onRequest<{ question: string }>("confirm", async ({ question }) => {
  if (!question) throw new RequestError("invalid", "a question is needed");
  return { ok: true };
});

const subscription = client.subscribe<{ name: string; text: string }>("room:lobby", {
  publication: (data, { offset }) => void [data.text, offset],
  subscribed: ({ recovered, publications }) => void [recovered, publications[0]?.data.name],
}, { history: 20 });
const members: Member[] = subscription.members;
void members;

// An untyped client takes any type.
new Client("ws://localhost/ws", { WebSocket }).on("anything", (data: unknown) => void data);
