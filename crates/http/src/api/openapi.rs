//! The OpenAPI 3.1 document of the API, derived from the handlers and the types they
//! read and answer (`utoipa`), served at `GET /openapi.json` and committed as
//! `docs/openapi.json` (a test keeps the two equal).
//!
//! Not in it: the provider webhooks (`/webhooks/vapi/…`, `/webhooks/twilio/…`), whose
//! callers are Vapi and Twilio and whose bodies are those platforms' own formats, checked
//! against their published schemas (`scripts/provider-schemas`); and the live page's
//! static files (`/`, `/live.css`, `/live.js`).

use super::campaigns;
use super::{acquire, callbacks, cluster, dnc, forecast, leases, ops, pools, summary, tickets};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "callgate",
        description = "Concurrency control for AI voice agents: leases on shared pools of capacity, \
                       waiting lines, campaigns. Every error is `{ \"error\": { \"code\", \"message\" } }`. \
                       With no keys configured (`[auth] keys`; loopback only), every caller is an admin and no \
                       key is needed.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        acquire::acquire,
        tickets::status,
        tickets::cancel,
        ops::waiting,
        leases::list,
        leases::release,
        leases::release_by_key,
        leases::renew,
        pools::list,
        pools::one,
        pools::set_limit,
        cluster::list,
        cluster::forget,
        super::events,
        ops::samples,
        ops::breakers,
        ops::alerts,
        ops::stats,
        ops::schedules,
        forecast::forecast,
        forecast::today,
        callbacks::list,
        callbacks::calls,
        summary::summary,
        campaigns::create,
        campaigns::list,
        campaigns::one,
        campaigns::leads,
        campaigns::act,
        campaigns::audit,
        dnc::lists,
        dnc::lookup,
        dnc::add,
        dnc::remove,
        dnc::import,
        super::healthz,
        super::metrics,
        super::reload,
        serve,
    ),
    modifiers(&Security),
    security(("bearer" = [])),
    tags(
        (name = "leases", description = "Acquire, renew and release slots"),
        (name = "tickets", description = "Waiting callers"),
        (name = "pools", description = "Pools and their limits"),
        (name = "events", description = "The live event stream"),
        (name = "operations", description = "Samples, breakers, alerts, figures"),
        (name = "calls", description = "Calls and callbacks the provider edges recorded"),
        (name = "campaigns", description = "Outbound campaigns"),
        (name = "compliance", description = "Suppression lists, opt-outs, the audit trail"),
        (name = "server", description = "Health, metrics, this document"),
    ),
)]
struct ApiDoc;

/// The bearer API keys of `[auth] keys` (and, for `/v1/events` only, `?token=`).
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of `[auth] keys`; its role (viewer < client < operator < admin) decides what it may do.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "token_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The same token as a query parameter: `/v1/events` only (browsers' `EventSource` cannot set headers).",
            ))),
        );
    }
}

/// The document as pretty JSON, with a final newline: what `GET /openapi.json` serves
/// and what `docs/openapi.json` holds.
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi", tag = "server", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json",
        body = Object)),
)]
pub(crate) async fn serve() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    ([(header::CONTENT_TYPE, "application/json")], DOC.get_or_init(document).as_str()).into_response()
}
