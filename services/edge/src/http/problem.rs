//! Error responses: `application/problem+json` (RFC 9457) with the SMPP status the error
//! corresponds to, so an operator reads HTTP and SMPP refusals alike.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use smsc_smpp::CommandStatus;

use crate::session::status_name;

/// A refused request.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    /// The SMPP status an ESME would have got for the same message.
    pub smpp: Option<CommandStatus>,
    /// Seconds after which the same request may succeed (`Retry-After`).
    pub retry_after: Option<u32>,
    /// Members beside the standard ones (`index` of a batch item, `accepted`).
    pub extra: Map<String, Value>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into(), smpp: None, retry_after: None, extra: Map::new() }
    }

    /// The refusal SMPP answers with `status`, as HTTP: 422 for a well-formed message
    /// the SMSC's rules refuse (400 is kept for a request the OpenAPI schema refuses),
    /// 401/403 for the credentials, 429 for what may pass later (rate, window, quota,
    /// backlog), 503 for what the SMSC could not do now.
    pub fn smpp(status: CommandStatus, detail: impl Into<String>) -> Self {
        let (http, retry_after) = match status {
            CommandStatus::ESME_RTHROTTLED => (StatusCode::TOO_MANY_REQUESTS, Some(1)),
            s if s == crate::QUOTA_EXCEEDED => (StatusCode::TOO_MANY_REQUESTS, None),
            CommandStatus::ESME_RMSGQFUL | CommandStatus::ESME_RSYSERR => {
                (StatusCode::SERVICE_UNAVAILABLE, Some(1))
            }
            CommandStatus::ESME_RINVSYSID | CommandStatus::ESME_RINVPASWD => {
                (StatusCode::UNAUTHORIZED, None)
            }
            CommandStatus::ESME_RBINDFAIL => (StatusCode::FORBIDDEN, None),
            CommandStatus::ESME_RQUERYFAIL => (StatusCode::NOT_FOUND, None),
            CommandStatus::ESME_RCANCELFAIL => (StatusCode::CONFLICT, None),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, None),
        };
        Self { smpp: Some(status), retry_after, ..Self::new(http, detail) }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    fn body(&self) -> Value {
        let mut body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let (Some(s), Some(obj)) = (self.smpp, body.as_object_mut()) {
            obj.insert("smpp_status".into(), json!(status_name(s)));
            obj.insert("smpp_status_code".into(), json!(s.0));
        }
        if let Some(obj) = body.as_object_mut() {
            obj.extend(self.extra.clone());
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"smsc\", charset=\"UTF-8\""),
            );
        }
        response
    }
}
