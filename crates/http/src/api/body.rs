//! JSON request bodies with JSON errors: malformed JSON, unknown fields and oversized
//! bodies are answered as `{ "error": … }`, never as plain text.

use crate::error::{ApiError, ErrorKind};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// A JSON body; an empty body reads as `None`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // A request that says it has no body (no `Content-Length` nor chunked body on a
        // `DELETE`, or `Content-Length: 0`) reads as empty without collecting it: every
        // release by key is such a request.
        if axum::body::HttpBody::size_hint(req.body()).exact() == Some(0) {
            return Ok(JsonBody(None));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorKind::PayloadTooLarge, "body_too_large", "the request body is larger than allowed")
            } else {
                ApiError::bad_request(format!("cannot read the request body: {}", r.body_text()))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| JsonBody(Some(v)))
            .map_err(|e| ApiError::new(ErrorKind::BadRequest, "invalid_json", format!("invalid JSON body: {e}")))
    }
}

/// The body, or 400 when it is empty.
pub(crate) fn required<T>(body: JsonBody<T>) -> Result<T, ApiError> {
    body.0.ok_or_else(|| ApiError::new(ErrorKind::BadRequest, "invalid_json", "a JSON body is required"))
}

/// The longest path parameter (an id or a name) read at all; longer ones are refused
/// before any lookup, so error messages never echo a huge value.
const MAX_PATH_PARAM: usize = 1024;
/// Most query parameters, and the longest name or value of one; each endpoint bounds its
/// own parameters more tightly (names: `max_name_bytes`).
const MAX_QUERY_PARAMS: usize = 16;
const MAX_QUERY_VALUE: usize = 1024;

/// One path parameter, with a JSON error when it cannot be read.
#[derive(Debug)]
pub(crate) struct PathParam(pub(crate) String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::bad_request(format!("bad path: {}", r.body_text())))
            .and_then(|p| match p.0.len() {
                n if n > MAX_PATH_PARAM => {
                    Err(ApiError::bad_request(format!("a path segment may be at most {MAX_PATH_PARAM} bytes, not {n}")))
                }
                _ => Ok(PathParam(p.0)),
            })
    }
}

/// The query string as a map (a name given twice keeps its last value), with a JSON
/// error when it is out of bounds.
///
/// Decoded with `form_urlencoded`, as axum's `Query` does underneath, but without its
/// serde layers: decoding into strings cannot fail (bad percent-escapes and invalid UTF-8
/// decode lossily, as they did), and the serde path cost a release by key about a
/// thousand instructions (BENCHMARKS.md, "Where the embedded store's time went").
#[derive(Debug)]
pub(crate) struct QueryMap(pub(crate) std::collections::HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, ApiError> {
        let mut q = std::collections::HashMap::new();
        if let Some(query) = parts.uri.query() {
            for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                q.insert(k.into_owned(), v.into_owned());
            }
        }
        if q.len() > MAX_QUERY_PARAMS {
            return Err(ApiError::bad_request(format!("at most {MAX_QUERY_PARAMS} query parameters")));
        }
        match q.iter().find(|(k, v)| k.len() > MAX_QUERY_VALUE || v.len() > MAX_QUERY_VALUE) {
            Some(_) => Err(ApiError::bad_request(format!(
                "a query parameter's name and value may be at most {MAX_QUERY_VALUE} bytes each"
            ))),
            None => Ok(QueryMap(q)),
        }
    }
}

/// A JSON answer, as `axum::Json` gives it (`content-type: application/json`; a value that
/// cannot be written is a 500), written into one `Vec` that becomes the body without a
/// copy. axum's `Json` writes through a `BytesMut` writer, one call per token, which cost
/// the acquire answer about twice the instructions (BENCHMARKS.md, "Where the embedded
/// store's time went").
#[derive(Debug)]
pub(crate) struct Json<T>(pub(crate) T);

/// The answers of the request paths fit in this; larger ones grow the buffer once or twice.
const ANSWER_CAPACITY: usize = 256;

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        let mut buf = Vec::with_capacity(ANSWER_CAPACITY);
        match serde_json::to_writer(&mut buf, &self.0) {
            Ok(()) => json_bytes(buf),
            Err(e) => {
                ApiError::new(ErrorKind::Internal, "internal", format!("cannot write the answer: {e}")).into_response()
            }
        }
    }
}

/// A 200 whose body is `json`, JSON text already written.
pub(crate) fn json_bytes(json: Vec<u8>) -> axum::response::Response {
    let mut answer = axum::response::Response::new(axum::body::Body::from(json));
    answer
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    answer
}
