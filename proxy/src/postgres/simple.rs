//! Statements sqlmux runs on a server on its own behalf, outside any
//! client's traffic: parameter learning at login, auth_query lookups, the
//! ROLLBACK of a leaked transaction and the DISCARD ALL that resets a
//! server before another client gets it. Each leaves the server's own
//! state (transaction status, statement cache, settings) what the server
//! reports.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use sqlmux_protocol::postgres::frame;
use sqlmux_protocol::postgres::message;

use crate::postgres::server::PgServer;

/// Longest sqlmux waits for its own ROLLBACK or DISCARD ALL.
const OWN_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest message accepted from a server in these exchanges.
const MAX_MESSAGE: u32 = 1 << 30;

fn invalid(what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

impl PgServer {
    /// Runs a simple query on this idle server and waits for its
    /// ReadyForQuery, recording parameter changes and completed commands.
    /// Returns the first error (SQLSTATE, message), if any; the transaction
    /// status is in [`PgServer::txn_status`].
    pub async fn run_simple(&mut self, sql: &str) -> std::io::Result<Option<(String, String)>> {
        let mut error = None;
        self.exchange(sql, |tag, body| {
            if tag == b'E' && error.is_none() {
                let f = message::decode_error_fields(body).unwrap_or_default();
                error = Some((f.code.to_owned(), f.message.to_owned()));
            }
            Ok(())
        })
        .await?;
        Ok(error)
    }

    /// Runs a simple query and returns its rows as text (NULL = None), or
    /// the server's error message.
    pub async fn query_rows(
        &mut self,
        sql: &str,
    ) -> std::io::Result<Result<Vec<Vec<Option<String>>>, String>> {
        let mut rows = Vec::new();
        let mut error = None;
        self.exchange(sql, |tag, body| {
            match tag {
                b'D' => {
                    rows.push(decode_data_row(body).ok_or_else(|| invalid("malformed DataRow"))?)
                }
                b'E' => {
                    let f = message::decode_error_fields(body).unwrap_or_default();
                    error.get_or_insert_with(|| format!("{} (SQLSTATE {})", f.message, f.code));
                }
                _ => {}
            }
            Ok(())
        })
        .await?;
        Ok(match error {
            Some(e) => Err(e),
            None => Ok(rows),
        })
    }

    /// Sends `sql` and hands every message up to ReadyForQuery to `each`;
    /// ParameterStatus and CommandComplete also update the server's state.
    async fn exchange(
        &mut self,
        sql: &str,
        mut each: impl FnMut(u8, &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut out = BytesMut::with_capacity(sql.len() + 8);
        message::query(&mut out, sql);
        self.stream.write_all_clear(&mut out).await?;
        loop {
            while let Some((h, body)) =
                frame::complete_frame(&self.buf, MAX_MESSAGE).map_err(invalid)?
            {
                let len = h.frame_len();
                let body = body.to_vec();
                self.buf.advance(len);
                match h.tag {
                    b'S' => {
                        if let Some((k, v)) = message::decode_parameter_status(&body) {
                            let (k, v) = (k.to_owned(), v.to_owned());
                            self.params.reported(&k, &v);
                        }
                    }
                    b'C' => self.command_completed(&body),
                    b'Z' => {
                        self.txn_status = body.first().copied().unwrap_or(b'E');
                        return Ok(());
                    }
                    _ => {}
                }
                each(h.tag, &body)?;
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Rolls back the open transaction of a leaked session. True when the
    /// server is idle and clean afterwards; otherwise it is marked dirty.
    pub async fn rollback_leaked(&mut self) -> bool {
        let ok = matches!(
            tokio::time::timeout(OWN_STATEMENT_TIMEOUT, self.run_simple("ROLLBACK")).await,
            Ok(Ok(_))
        ) && self.txn_status == b'I';
        self.dirty |= !ok;
        ok
    }

    /// DISCARD ALL before a pinned or session-mode server returns to the
    /// pool: the server's statements and settings are gone, and so is what
    /// sqlmux lists of them (see [`PgServer::command_completed`]).
    pub async fn discard_all(&mut self) -> bool {
        let ok = matches!(
            tokio::time::timeout(OWN_STATEMENT_TIMEOUT, self.run_simple("DISCARD ALL")).await,
            Ok(Ok(None))
        ) && self.txn_status == b'I';
        if ok {
            self.carries_session_state = false;
        } else {
            self.dirty = true;
        }
        ok
    }
}

fn decode_data_row(mut body: &[u8]) -> Option<Vec<Option<String>>> {
    let n = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    body = &body[2..];
    let mut row = Vec::with_capacity(n);
    for _ in 0..n {
        let len = i32::from_be_bytes(body.get(..4)?.try_into().ok()?);
        body = &body[4..];
        if len < 0 {
            row.push(None);
            continue;
        }
        let (value, rest) = body.split_at_checked(len as usize)?;
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
        body = rest;
    }
    Some(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_rows_decode_and_truncated_ones_are_refused() {
        let row = [0, 2, 0, 0, 0, 1, b'a', 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode_data_row(&row),
            Some(vec![Some("a".to_owned()), None])
        );
        assert_eq!(decode_data_row(&row[..6]), None);
        assert_eq!(decode_data_row(&[0]), None);
    }
}
