//! A client of the live protocol (docs/PROTOCOL.md) for tests: requests by id, everything
//! else kept in order.
#![allow(dead_code, unreachable_pub)]

use std::{collections::VecDeque, net::SocketAddr};

use serde_json::{Value, json};

use super::common::{Client, connect, recv_text, send_text};

/// A client of the protocol: requests by id, everything else kept in order for the test.
pub struct LiveClient {
    pub ws: Client,
    pub next_id: u64,
    pub inbox: VecDeque<Value>,
}

impl LiveClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            ws: connect(addr).await,
            next_id: 1,
            inbox: VecDeque::new(),
        }
    }

    pub async fn recv(&mut self) -> Value {
        serde_json::from_str(&recv_text(&mut self.ws).await).unwrap()
    }

    /// Sends a request and returns its answer (`reply` or `error`); what arrives before it is
    /// kept in `inbox`.
    pub async fn request(&mut self, kind: &str, data: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"type": kind, "id": id, "data": data});
        send_text(&mut self.ws, &request.to_string()).await;
        loop {
            let message = self.recv().await;
            if message["id"] == id {
                return message;
            }
            self.inbox.push_back(message);
        }
    }

    pub async fn subscribe(&mut self, data: Value) -> Value {
        let answer = self.request("subscribe", data).await;
        assert_eq!(answer["type"], "reply", "{answer}");
        answer["data"].clone()
    }

    /// The next message that is not an answer, from the inbox first.
    pub async fn next(&mut self) -> Value {
        match self.inbox.pop_front() {
            Some(message) => message,
            None => self.recv().await,
        }
    }

    /// The next message of type `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] == kind {
                return message["data"].clone();
            }
        }
    }
}
