//! One Twilio request about one call: admission, the waiting room, the overflow chain,
//! callbacks, voicemail and the call's end.

use super::form::Params;
use super::twiml::{Dialed, Twiml, Verb};
use super::Endpoint;
use crate::app::App;
use crate::callers::Chain;
use crate::error::ApiError;
use callgate_config::{FlowConfig, Overflow, OverflowAction};
use callgate_core::TicketId;
use callgate_events::views::LeaseView;
use callgate_governor::{AcquireRequest, Answer, Edge, Target, TicketState};
use callgate_ops::ChainKind;
use callgate_runtime::inbound::{book_callback, record_call, Call, DEFAULT_BUSY, DEFAULT_CALLBACK, MAX_CALL_ID};
use callgate_runtime::providers::Provider;
use std::time::Duration;

/// How long a wait-URL request is held open for a grant when there is nothing new to
/// say: well inside Twilio's 15 s webhook timeout, short enough that the caller is not
/// left in silence for long.
const HOLD_POLL: Duration = Duration::from_secs(4);
/// Seconds of silence between wait-URL requests.
const HOLD_PAUSE: u32 = 1;
/// Seconds a callback offer waits for its key.
const OFFER_TIMEOUT: u32 = 5;
/// A voicemail's default longest message, in seconds.
const VOICEMAIL_SECONDS: u32 = 120;
/// What a caller who pressed the opt-out key hears before the call ends.
const OPTED_OUT: &str = "You will not be called again at this number. Goodbye.";
/// A caller who presses a key a menu does not have hears the menu this many times.
const MENU_TRIES: u32 = 2;

const DEFAULT_VOICEMAIL: &str = "All our lines are busy right now. Please leave a message after the tone.";
const CALLBACK_CONFIRMED: &str = "Thank you. We will call you back as soon as a line is free. Goodbye.";
const VOICEMAIL_THANKS: &str = "Thank you for your message. Goodbye.";
const NO_VOICEMAIL: &str = "We did not receive a message. Goodbye.";
const NOT_AN_OPTION: &str = "Sorry, that is not an option.";

/// The Twilio call statuses after which the call holds nothing.
const TERMINAL: [&str; 5] = ["completed", "busy", "failed", "no-answer", "canceled"];

fn offer_text(key: &str) -> String {
    format!("All our lines are busy right now. Press {key} and we will call you back as soon as a line is free.")
}

/// "You are number 2 in line. Your expected wait is about 3 minutes."
pub(crate) fn announcement(position: u32, eta_ms: u64) -> String {
    let wait = if eta_ms < 60_000 {
        "less than a minute".to_owned()
    } else {
        let minutes = eta_ms.div_ceil(60_000);
        format!("about {minutes} minute{}", if minutes == 1 { "" } else { "s" })
    };
    format!("You are number {position} in line. Your expected wait is {wait}.")
}

/// A request about one call, after its signature was checked.
pub(crate) struct TwilioCall<'a> {
    pub(super) app: &'a App,
    pub(super) provider: &'a Provider,
    public_url: &'a str,
    pub(super) call: Call,
}

impl<'a> TwilioCall<'a> {
    /// The call the parameters describe: `CallSid` (required), `From`, `To`.
    pub(crate) fn new(
        app: &'a App,
        provider: &'a Provider,
        public_url: &'a str,
        params: &Params,
    ) -> Result<Self, ApiError> {
        let sid = params
            .value("CallSid")
            .filter(|s| s.len() <= MAX_CALL_ID)
            .ok_or_else(|| ApiError::bad_request(format!("`CallSid` is missing or longer than {MAX_CALL_ID} bytes")))?;
        let call = Call {
            provider: provider.name.clone(),
            id: sid.to_owned(),
            from: params.value("From").map(str::to_owned),
            to: params.value("To").map(str::to_owned),
        };
        Ok(TwilioCall { app, provider, public_url, call })
    }

    /// Answers one endpoint.
    pub(crate) async fn handle(&self, endpoint: Endpoint, params: &Params, query: &Params) -> Result<Twiml, ApiError> {
        match endpoint {
            Endpoint::Voice => return self.arrived().await,
            Endpoint::Status => return self.status(params, query).await,
            _ => {}
        }
        let Some(flow) = query.value("flow").and_then(|f| self.app.inbound.flow(f)) else {
            // The URL was ours, but the flow is gone (the configuration changed meanwhile).
            tracing::warn!(call = %self.call.id, flow = ?query.value("flow"), "A Twilio URL names a flow that is not configured");
            return Ok(Twiml::goodbye(DEFAULT_BUSY));
        };
        let flow = &flow;
        let step = || -> Result<usize, ApiError> {
            query.value("step").map_or(Ok(0), |s| s.parse().map_err(|_| ApiError::bad_request("bad `step`")))
        };
        let ticket = || -> Result<TicketId, ApiError> {
            query.value("ticket").and_then(|t| t.parse().ok()).ok_or_else(|| ApiError::bad_request("bad `ticket`"))
        };
        match endpoint {
            Endpoint::Wait => self.wait(flow, ticket()?).await,
            Endpoint::Queue => self.left_queue(flow, ticket()?, params.value("QueueResult").unwrap_or("")).await,
            Endpoint::Overflow => self.chain(flow, &self.walking(flow, query), step()?, true).await,
            Endpoint::Gather => {
                let attempt = query.value("attempt").and_then(|a| a.parse().ok()).unwrap_or(1);
                let digits = params.value("Digits").unwrap_or("");
                let chain = self.walking(flow, query);
                self.gathered(flow, &chain, step()?, query.value("menu"), attempt, digits).await
            }
            Endpoint::Dialed => {
                if params.value("DialCallStatus") == Some("completed") {
                    return Ok(Twiml::of(Verb::Hangup));
                }
                if query.value("spill").is_some() {
                    // The transfer to a spill's flow did not connect: its line is free now.
                    self.app.inbound.spills.abandon(self.app.effects(), &self.provider.name, &self.call.id).await?;
                }
                if query.value("spill") == Some("route") {
                    // A routed caller goes on here, as if no rule had applied.
                    return self.admit(flow, true).await;
                }
                self.chain(flow, &self.walking(flow, query), step()?, true).await
            }
            Endpoint::Voicemail => self.voicemail(flow, params).await,
            // Answered above.
            Endpoint::Voice | Endpoint::Status => Ok(Twiml::new()),
        }
    }

    pub(super) fn url(&self, endpoint: Endpoint, query: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            q.append_pair(k, v);
        }
        format!("{}/webhooks/twilio/{}/{}?{}", self.public_url, self.provider.name, endpoint.as_str(), q.finish())
    }

    /// The voice URL: a call arrived.
    async fn arrived(&self) -> Result<Twiml, ApiError> {
        let arrived_at = self.app.governor.now_ms();
        let flow = self.app.inbound.flow_for_call(&self.call, arrived_at).filter(|f| f.twilio.is_some());
        let Some(flow) = flow else {
            tracing::warn!(provider = %self.provider.name, call = %self.call.id, number = ?self.call.to, "No flow serves this Twilio number");
            return Ok(Twiml::of(Verb::Reject { busy: false }));
        };
        let flow = &flow;
        // A spilled caller's transferred call takes the line held for it: it counts once.
        if let Some(lease) =
            self.app.inbound.spills.arrive(self.app.effects(), &self.app.inbound, &self.call, flow).await?
        {
            return Ok(self.connect(flow, &lease));
        }
        // A routing rule sends the caller to another flow, admitted there first.
        if let Some((step, to)) = self.app.inbound.route_for(flow, &self.call, arrived_at) {
            if let Some(twiml) = self.spill(flow, &step, &to, None).await? {
                return Ok(twiml);
            }
        }
        self.admit(flow, false).await
    }

    /// Admits the call in `flow`: granted, queued or the overflow. `answered`: the call
    /// was answered already (a routed caller whose transfer did not connect).
    async fn admit(&self, flow: &FlowConfig, answered: bool) -> Result<Twiml, ApiError> {
        let answer = self
            .app
            .governor
            .acquire(AcquireRequest {
                target: Target::Flow(flow.name.clone()),
                key: Some(self.call.id.clone()),
                ttl_ms: None,
                // The flow's waiting room decides how long.
                max_wait_ms: None,
                wait_ms: 0,
                meta: Some(self.call.meta()),
                edge: Edge::Twilio,
            })
            .await?;
        let now = self.app.governor.now_ms();
        let mut update = self.call.update(now);
        update.flow = Some(flow.name.clone());
        update.started_at = Some(now);
        match answer {
            Answer::Granted(lease) => {
                update.outcome = Some("granted".into());
                record_call(&self.app.governor, update).await?;
                Ok(self.connect(flow, &lease))
            }
            Answer::Queued(ticket) => {
                update.outcome = Some("queued".into());
                record_call(&self.app.governor, update).await?;
                let ticket_id = ticket.id.to_string();
                let query = [("flow", flow.name.as_str()), ("ticket", ticket_id.as_str())];
                let name: String = format!("callgate-{}", flow.name).chars().take(64).collect();
                Ok(Twiml::of(Verb::Enqueue {
                    name,
                    wait_url: self.url(Endpoint::Wait, &query),
                    action: self.url(Endpoint::Queue, &query),
                }))
            }
            Answer::Rejected { dependency, .. } => {
                record_call(&self.app.governor, update).await?;
                self.start_overflow(flow, dependency.is_some(), answered).await
            }
        }
    }

    /// Where a granted call goes.
    fn connect(&self, flow: &FlowConfig, lease: &LeaseView) -> Twiml {
        let Some(twilio) = &flow.twilio else { return Twiml::goodbye(DEFAULT_BUSY) };
        let c = &twilio.connect;
        if let Some(url) = &c.stream_url {
            let parameters = vec![
                ("lease".to_owned(), lease.id.to_string()),
                ("flow".to_owned(), flow.name.clone()),
                ("call_sid".to_owned(), self.call.id.clone()),
            ];
            return Twiml::of(Verb::Stream { url: url.clone(), parameters });
        }
        let to = match (&c.sip, &c.number) {
            (Some(sip), _) => Dialed::Sip(sip.clone()),
            (None, Some(number)) => Dialed::Number(number.clone()),
            (None, None) => return Twiml::goodbye(DEFAULT_BUSY),
        };
        Twiml::of(Verb::Dial { to, action: None })
    }

    /// The wait URL: announce the place in line when there is news, otherwise hold the
    /// request open until the ticket ends or a few seconds pass; `<Leave/>` once it ended.
    async fn wait(&self, flow: &FlowConfig, ticket: TicketId) -> Result<Twiml, ApiError> {
        let (governor, room, sid) = (&self.app.governor, &self.app.waiting_room, self.call.id.as_str());
        let hold_audio = flow.twilio.as_ref().and_then(|t| t.hold_audio.clone());
        // Only what is on disk: `<Leave/>` connects the caller, so a grant must be durable.
        let mut state = governor.durable_view(|g| g.ticket(ticket)).await?;
        if let Some(TicketState::Waiting(view)) = &state {
            let down = governor.dependency_down(&flow.name);
            if !down && hold_audio.is_none() && !room.due(sid, view.position, governor.now_ms()) {
                governor.await_ticket(ticket, HOLD_POLL).await;
                state = governor.durable_view(|g| g.ticket(ticket)).await?;
            }
        }
        if matches!(state, Some(TicketState::Waiting(_))) && governor.dependency_down(&flow.name) {
            // The assistant this caller waits for is down (its breaker is open): out of
            // the queue now; the queue's action URL gives up the place and plays the
            // flow's fallback.
            return Ok(Twiml::of(Verb::Leave));
        }
        let Some(TicketState::Waiting(view)) = state else {
            // Granted, timed out or cancelled: the queue's action URL takes it from here.
            return Ok(Twiml::of(Verb::Leave));
        };
        let now = governor.now_ms();
        let mut twiml = Twiml::new();
        if room.due(sid, view.position, now) {
            twiml = twiml.push(Verb::Say(announcement(view.position, view.eta_ms)));
            room.announced(sid, view.position, now);
        }
        Ok(twiml.push(match hold_audio {
            Some(url) => Verb::Play(url),
            None => Verb::Pause(HOLD_PAUSE),
        }))
    }

    /// The queue's action URL: the caller left the waiting room.
    async fn left_queue(&self, flow: &FlowConfig, ticket: TicketId, result: &str) -> Result<Twiml, ApiError> {
        self.app.waiting_room.forget(&self.call.id);
        if result == "hangup" {
            let cancelled = self.app.governor.cancel(ticket).await?;
            tracing::debug!(call = %self.call.id, %ticket, ?cancelled, "A waiting caller hung up");
            return Ok(Twiml::new());
        }
        match self.app.governor.durable_view(|g| g.ticket(ticket)).await? {
            Some(TicketState::Granted(Some(lease), _)) if lease.key.as_deref() == Some(self.call.id.as_str()) => {
                if self.app.governor.dependency_down(&flow.name) {
                    // The line came free while the assistant is down: connecting the
                    // caller to it would fail them. The line goes back; the fallback.
                    self.app.governor.end_call(&self.call.id).await?;
                    return self.start_overflow(flow, true, true).await;
                }
                let mut update = self.call.update(self.app.governor.now_ms());
                update.outcome = Some("granted".into());
                record_call(&self.app.governor, update).await?;
                Ok(self.connect(flow, &lease))
            }
            Some(TicketState::Cancelled) => Ok(Twiml::of(Verb::Hangup)),
            Some(TicketState::Waiting(_)) => {
                // Twilio took the caller out for its own reasons (queue full, an error),
                // or the wait URL let them go because the assistant is down: give up the
                // place in line and go on with the chain in force (the fallback while a
                // dependency is down).
                self.app.governor.cancel(ticket).await?;
                self.start_overflow(flow, false, true).await
            }
            // Timed out (or the lease is gone already): the flow's overflow.
            _ => self.start_overflow(flow, false, true).await,
        }
    }

    /// The status callback: a terminal status ends what the call holds; a call the
    /// campaign dialer placed also hands its status to the dialer.
    async fn status(&self, params: &Params, query: &Params) -> Result<Twiml, ApiError> {
        let status = params.value("CallStatus").unwrap_or("");
        if TERMINAL.contains(&status) {
            self.app.waiting_room.forget(&self.call.id);
            self.app.overflow_chains.forget(&self.call.id);
            let end = self.app.inbound.spills.end_call(self.app.effects(), &self.call).await?;
            tracing::debug!(provider = %self.provider.name, call = %self.call.id, status, ?end, "Twilio call ended");
            let now = self.app.governor.now_ms();
            let mut update = self.call.update(now);
            update.ended_at = Some(now);
            update.ended_reason = Some(status.to_owned());
            update.duration_ms =
                params.value("CallDuration").and_then(|d| d.parse::<u64>().ok()).map(|s| s.saturating_mul(1000));
            record_call(&self.app.governor, update).await?;
        }
        self.campaign_update(status, params, query).await;
        Ok(Twiml::new())
    }

    /// Publishes a status on the bus as a call event; the campaign dialer ignores calls it
    /// did not place. Its calls' status callback URL carries `callgate_attempt` (signed with
    /// the rest of the URL); the dialer also knows them by `CallSid`.
    async fn campaign_update(&self, status: &str, params: &Params, query: &Params) {
        // Asynchronous answering machine detection posts `AnsweredBy` without a status.
        let answerer = params.value("AnsweredBy").and_then(callgate_dialer::dial::Answerer::parse);
        let state = match (status, answerer) {
            ("", None) => return,
            ("" | "in-progress", Some(by)) => callgate_dialer::dial::CallState::Answered(by),
            _ => callgate_providers::twilio::dial::call_state(&serde_json::json!({
                "status": status,
                "duration": params.value("CallDuration"),
                "answered_by": params.value("AnsweredBy"),
            })),
        };
        let update = callgate_events::bus::ProviderUpdate {
            provider: self.provider.name.to_string(),
            call_id: self.call.id.clone(),
            attempt: query.value("callgate_attempt").and_then(|a| a.parse().ok()),
            state,
        };
        if self.app.bus.call(update).await {
            tracing::debug!(provider = %self.provider.name, call = %self.call.id, status, "A campaign call's status");
        }
    }

    /// The caller's overflow starts: the chain in force now (the fallback while a
    /// dependency is down, or when `blocked` by a breaker a moment ago; an alert's
    /// `set_overflow`; else the configured one) is frozen for this call and walked from
    /// its first step.
    async fn start_overflow(&self, flow: &FlowConfig, blocked: bool, answered: bool) -> Result<Twiml, ApiError> {
        let (kind, steps) = self
            .app
            .governor
            .overflow_chain_now(&flow.name, blocked)
            .unwrap_or((ChainKind::Configured, flow.overflow.clone()));
        let chain = Chain { kind, steps: steps.into() };
        self.app.overflow_chains.freeze(&self.call.id, &flow.name, chain.clone(), self.app.governor.now_ms());
        self.chain(flow, &chain, 0, answered).await
    }

    /// The chain this caller is walking: the one frozen when its overflow started; after
    /// a restart (which forgets that), the chain of the kind its URL names.
    fn walking(&self, flow: &FlowConfig, query: &Params) -> Chain {
        if let Some(chain) = self.app.overflow_chains.get(&self.call.id, &flow.name) {
            return chain;
        }
        let kind = query.value("chain").and_then(ChainKind::parse).unwrap_or(ChainKind::Configured);
        let steps = self.app.governor.overflow_chain_of_kind(&flow.name, kind).unwrap_or_else(|| flow.overflow.clone());
        Chain { kind, steps: steps.into() }
    }

    /// The overflow chain from step `from`: the first step that can be carried out.
    /// `answered` is false only while the call has not been answered yet (then a `busy`
    /// step can still reject it without billing).
    async fn chain(&self, flow: &FlowConfig, chain: &Chain, from: usize, answered: bool) -> Result<Twiml, ApiError> {
        for (k, step) in chain.steps.iter().enumerate().skip(from) {
            if let Some(twiml) = self.step(flow, chain.kind, k, step, answered, false).await? {
                self.app.metrics.edges.overflow(&flow.name, step.action.as_str());
                return Ok(twiml);
            }
        }
        self.app.metrics.edges.overflow(&flow.name, "none");
        Ok(if answered { Twiml::goodbye(DEFAULT_BUSY) } else { Twiml::of(Verb::Reject { busy: true }) })
    }

    /// One overflow action at chain position `k` (menu keys carry out actions at the
    /// position of their menu); `None` when it cannot be carried out for this caller.
    /// `pressed`: the caller chose it with a menu key, so a callback is booked at once.
    async fn step(
        &self,
        flow: &FlowConfig,
        kind: ChainKind,
        k: usize,
        step: &Overflow,
        answered: bool,
        pressed: bool,
    ) -> Result<Option<Twiml>, ApiError> {
        let next = (k + 1).to_string();
        let flow_name = flow.name.as_str();
        let chain = kind.as_str();
        let message = step.message.as_deref();
        let say = |twiml: Twiml| match message {
            Some(m) => twiml.push(Verb::Say(m.to_owned())),
            None => twiml,
        };
        Ok(Some(match step.action {
            OverflowAction::Busy if !answered => Twiml::of(Verb::Reject { busy: true }),
            OverflowAction::Busy => Twiml::goodbye(message.unwrap_or(DEFAULT_BUSY)),
            OverflowAction::Voicemail => {
                let max_length =
                    step.max_length.map_or(VOICEMAIL_SECONDS, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
                Twiml::of(Verb::Say(message.unwrap_or(DEFAULT_VOICEMAIL).to_owned()))
                    .push(Verb::Record { action: self.url(Endpoint::Voicemail, &[("flow", flow_name)]), max_length })
                    .push(Verb::Say(NO_VOICEMAIL.to_owned()))
                    .push(Verb::Hangup)
            }
            OverflowAction::Callback if self.call.callable().is_none() => return Ok(None),
            OverflowAction::Callback => match (&step.key, pressed) {
                (Some(key), false) => {
                    let step_no = k.to_string();
                    let offer = message.map_or_else(|| offer_text(key), str::to_owned);
                    Twiml::of(Verb::Gather {
                        action: self
                            .url(Endpoint::Gather, &[("flow", flow_name), ("step", &step_no), ("chain", chain)]),
                        timeout: OFFER_TIMEOUT,
                        prompt: vec![Verb::Say(offer)],
                    })
                    .push(Verb::Redirect(
                        self.url(Endpoint::Overflow, &[("flow", flow_name), ("step", &next), ("chain", chain)]),
                    ))
                }
                _ => {
                    if !book_callback(self.app.effects(), &self.call, flow, step).await? {
                        return Ok(None);
                    }
                    // With a `key`, the message was the offer; the confirmation is ours.
                    let text = match (&step.key, message) {
                        (Some(_), _) => CALLBACK_CONFIRMED,
                        (None, Some(m)) => m,
                        (None, None) if pressed => CALLBACK_CONFIRMED,
                        (None, None) => DEFAULT_CALLBACK,
                    };
                    Twiml::goodbye(text)
                }
            },
            OverflowAction::Transfer => {
                let to = match (&step.number, &step.sip) {
                    (Some(n), _) => Dialed::Number(n.clone()),
                    (None, Some(s)) => Dialed::Sip(s.clone()),
                    (None, None) => return Ok(None),
                };
                let action =
                    Some(self.url(Endpoint::Dialed, &[("flow", flow_name), ("step", &next), ("chain", chain)]));
                say(Twiml::new()).push(Verb::Dial { to, action })
            }
            OverflowAction::Spill => {
                let Some(target) = step.flow.as_deref().and_then(|f| self.app.inbound.flow(f)) else { return Ok(None) };
                let back = [("flow", flow_name), ("step", next.as_str()), ("chain", chain), ("spill", "step")];
                return self.spill(flow, step, &target, Some(&back)).await;
            }
            OverflowAction::Ivr => {
                let Some(menu) = step.menu.as_deref() else { return Ok(None) };
                match self.menu(flow, kind, k, menu, message, 1) {
                    Some(twiml) => twiml,
                    None => return Ok(None),
                }
            }
        }))
    }

    /// A menu's prompt in a `<Gather>`, then (no key) the chain's next step.
    fn menu(
        &self,
        flow: &FlowConfig,
        kind: ChainKind,
        k: usize,
        name: &str,
        message: Option<&str>,
        attempt: u32,
    ) -> Option<Twiml> {
        let menu = self.app.inbound.menu(name)?;
        let (step_no, next, attempt) = (k.to_string(), (k + 1).to_string(), attempt.to_string());
        let mut prompt: Vec<Verb> = message.map(|m| Verb::Say(m.to_owned())).into_iter().collect();
        prompt.push(Verb::Say(menu.prompt.clone()));
        let chain = kind.as_str();
        let query =
            [("flow", flow.name.as_str()), ("step", &step_no), ("menu", name), ("attempt", &attempt), ("chain", chain)];
        Some(
            Twiml::of(Verb::Gather {
                action: self.url(Endpoint::Gather, &query),
                timeout: u32::try_from(menu.timeout.as_secs()).unwrap_or(60).clamp(1, 60),
                prompt,
            })
            .push(Verb::Redirect(
                self.url(Endpoint::Overflow, &[("flow", flow.name.as_str()), ("step", &next), ("chain", chain)]),
            )),
        )
    }

    /// The caller pressed `digits` at chain position `k`: accepting a callback offer, or
    /// choosing in `menu`.
    async fn gathered(
        &self,
        flow: &FlowConfig,
        chain: &Chain,
        k: usize,
        menu: Option<&str>,
        attempt: u32,
        digits: &str,
    ) -> Result<Twiml, ApiError> {
        // The opt-out key, in any menu or offer: the caller's number goes on the list.
        let compliance = self.app.inbound.compliance();
        if !digits.is_empty() && compliance.twilio_opt_out_key.as_deref() == Some(digits) {
            let source = format!("call:{}", self.call.id);
            let why = format!("key {digits}");
            callgate_runtime::inbound::opt_out(
                &self.app.campaigns,
                self.call.from.as_deref(),
                compliance.opt_out_list(),
                &source,
                &why,
            )
            .await;
            return Ok(Twiml::goodbye(OPTED_OUT));
        }
        let Some(name) = menu else {
            let offer = chain.steps.get(k).filter(|s| s.action == OverflowAction::Callback);
            if let Some(step) = offer.filter(|s| !digits.is_empty() && s.key.as_deref() == Some(digits)) {
                if let Some(twiml) = self.step(flow, chain.kind, k, step, true, true).await? {
                    self.app.metrics.edges.overflow(&flow.name, "callback");
                    return Ok(twiml);
                }
            }
            return self.chain(flow, chain, k + 1, true).await;
        };
        let Some(menu) = self.app.inbound.menu(name) else { return self.chain(flow, chain, k + 1, true).await };
        match menu.keys.get(digits) {
            Some(action) => match self.step(flow, chain.kind, k, action, true, true).await? {
                Some(twiml) => {
                    self.app.metrics.edges.overflow(&flow.name, action.action.as_str());
                    Ok(twiml)
                }
                None => self.chain(flow, chain, k + 1, true).await,
            },
            None if attempt < MENU_TRIES => {
                match self.menu(flow, chain.kind, k, name, Some(NOT_AN_OPTION), attempt + 1) {
                    Some(twiml) => Ok(twiml),
                    None => self.chain(flow, chain, k + 1, true).await,
                }
            }
            None => self.chain(flow, chain, k + 1, true).await,
        }
    }

    /// A voicemail was recorded: keep where it is with the call.
    async fn voicemail(&self, flow: &FlowConfig, params: &Params) -> Result<Twiml, ApiError> {
        let mut update = self.call.update(self.app.governor.now_ms());
        update.flow = Some(flow.name.clone());
        update.outcome = Some("overflow:voicemail".into());
        update.recording_url = params.value("RecordingUrl").map(str::to_owned);
        record_call(&self.app.governor, update).await?;
        Ok(Twiml::goodbye(VOICEMAIL_THANKS))
    }
}

#[cfg(test)]
mod tests {
    use super::announcement;

    #[test]
    fn the_announcement_says_the_place_and_the_wait() {
        assert_eq!(announcement(1, 20_000), "You are number 1 in line. Your expected wait is less than a minute.");
        assert_eq!(announcement(3, 60_000), "You are number 3 in line. Your expected wait is about 1 minute.");
        assert_eq!(announcement(7, 150_000), "You are number 7 in line. Your expected wait is about 3 minutes.");
    }
}
