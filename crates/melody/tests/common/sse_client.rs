//! A minimal Server-Sent Events client for tests: one request, the chunked body decoded, events
//! read block by block.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

use super::common::WAIT;

/// A minimal SSE client: sends the request, checks the head, then decodes the chunked body.
pub struct SseClient {
    stream: TcpStream,
    buffer: Vec<u8>,
    body: Vec<u8>,
}

impl SseClient {
    pub async fn open(addr: SocketAddr, path: &str, headers: &str) -> Result<Self, (u16, String)> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut client = Self {
            stream,
            buffer: Vec::new(),
            body: Vec::new(),
        };
        let head = timeout(WAIT, async {
            loop {
                if let Some(end) = client.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head: Vec<u8> = client.buffer.drain(..end + 4).collect();
                    return String::from_utf8(head).unwrap();
                }
                client.fill().await;
            }
        })
        .await
        .expect("no response head");
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        if status != 200 {
            return Err((status, head));
        }
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        Ok(client)
    }

    pub async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "server closed the stream");
        self.buffer.extend_from_slice(&chunk[..n]);
    }

    /// Moves complete chunks of the chunked body into `body`; `false` at the last chunk.
    fn decode_chunks(&mut self) -> bool {
        loop {
            let Some(line_end) = self.buffer.windows(2).position(|w| w == b"\r\n") else {
                return true;
            };
            let size = std::str::from_utf8(&self.buffer[..line_end]).unwrap();
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                return false;
            }
            if self.buffer.len() < line_end + 2 + size + 2 {
                return true;
            }
            self.body
                .extend_from_slice(&self.buffer[line_end + 2..line_end + 2 + size]);
            self.buffer.drain(..line_end + 2 + size + 2);
        }
    }

    /// The next SSE block (up to a blank line), comments included.
    pub async fn next_block(&mut self) -> String {
        timeout(WAIT, async {
            loop {
                if let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = self.body.drain(..end + 2).collect();
                    return String::from_utf8(block).unwrap();
                }
                let open = self.decode_chunks();
                if self.body.windows(2).any(|w| w == b"\n\n") {
                    continue;
                }
                assert!(open, "stream ended");
                self.fill().await;
            }
        })
        .await
        .expect("no SSE block in time")
    }

    /// The next block that is not a keep-alive comment.
    pub async fn next_event(&mut self) -> String {
        loop {
            let block = self.next_block().await;
            if !block.starts_with(':') {
                return block;
            }
        }
    }

    /// Reads until the server ends the stream (the last chunk, or the connection closing).
    pub async fn until_end(&mut self) {
        timeout(WAIT, async {
            loop {
                if !self.decode_chunks() {
                    return;
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .expect("stream did not end");
    }
}
