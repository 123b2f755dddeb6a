//! Slipway's RabbitMQ topology. Tasks travel from the orchestrator to runners
//! on durable queues, as persistent messages published with confirms. A
//! message only names a task: the task itself lives in Postgres, and a runner
//! claims it there before running it, so a message delivered twice runs the
//! task once.
//!
//! There is one task queue per set of runner labels a task needs:
//! `slipway.tasks` for none, `slipway.tasks.<labels sorted, joined by +>`
//! otherwise. A runner consumes the queue of every subset of its own labels,
//! so it only ever receives tasks it can run, and a task that no runner can
//! run waits in its queue.
//!
//! Events (alerts.md) travel from the orchestrator to notifiers through a
//! durable fanout exchange into a durable queue, also persistent and
//! confirmed, so events published while no notifier runs wait for one. An
//! event is a `slipway.v1.AlertEvent` in protobuf (the `proto` crate knows
//! it) with its id as the message id: the notifier records one alert per id.
//!
//! Both kinds of message carry their task's W3C trace context in their
//! headers (`traceparent`), so the runner's and the notifier's spans join
//! the task's trace.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Connection, Consumer, DefaultConnectionBuilder, ExchangeKind,
};
use serde::{Deserialize, Serialize};

pub use lapin;

/// How every service retries its broker connection: at once, then waiting
/// longer each time up to 10 s, with jitter so that runners cut off together
/// do not come back together, for as long as the service runs.
pub const RECONNECT: backon::ExponentialBuilder = backon::ExponentialBuilder::new()
    .with_min_delay(std::time::Duration::from_millis(200))
    .with_max_delay(std::time::Duration::from_secs(10))
    .with_jitter()
    .without_max_times();

/// What can go wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message")]
    Nacked,
    #[error("malformed task message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// `SLIPWAY_AMQP_CA` cannot be used.
    #[error("{0}")]
    Tls(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// String headers of a message: its trace context.
pub type Headers = HashMap<String, String>;

/// The string-valued headers of a received message.
pub fn headers(properties: &BasicProperties) -> Headers {
    let Some(table) = properties.headers() else {
        return Headers::new();
    };
    table
        .inner()
        .iter()
        .filter_map(|(name, value)| match value {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes())
                .ok()
                .map(|v| (name.as_str().to_owned(), v.to_owned())),
            _ => None,
        })
        .collect()
}

fn field_table(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        // A name longer than AMQP allows is left out.
        if let Ok(name) = ShortString::try_new(name.as_str()) {
            table.insert(name, AMQPValue::LongString(value.as_str().into()));
        }
    }
    table
}

/// Names of the queues. The prefix isolates several Slipway installations
/// (or test runs) on one broker.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    prefix: String,
    /// `x-expires` of the queue: a broker deletes it after this long without
    /// consumers. Only for throwaway installations (tests); every
    /// declaration of one queue must agree on it.
    expires_ms: Option<u32>,
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            expires_ms: None,
        }
    }

    /// Queues that disappear once unused for `ms` milliseconds (0: never).
    pub fn expiring(mut self, ms: u32) -> Self {
        self.expires_ms = (ms > 0).then_some(ms);
        self
    }

    /// The queue of tasks that need no labels.
    pub fn tasks_queue(&self) -> String {
        self.tasks_queue_for("")
    }

    /// The queue of tasks needing the labels `runs_on`, in their canonical
    /// form (sorted, joined by `+`; empty for none).
    pub fn tasks_queue_for(&self, runs_on: &str) -> String {
        if runs_on.is_empty() {
            format!("{}slipway.tasks", self.prefix)
        } else {
            format!("{}slipway.tasks.{runs_on}", self.prefix)
        }
    }

    /// The exchange events are published to.
    pub fn events_exchange(&self) -> String {
        format!("{}slipway.events", self.prefix)
    }

    /// The queue notifiers take events from, bound to the events exchange.
    pub fn notify_queue(&self) -> String {
        format!("{}slipway.notify", self.prefix)
    }

    fn queue_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        if let Some(ms) = self.expires_ms {
            arguments.insert("x-expires".into(), lapin::types::AMQPValue::LongUInt(ms));
        }
        arguments
    }
}

/// The body of a task message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub task_id: i64,
}

impl TaskMessage {
    pub fn decode(body: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(body)?)
    }
}

/// Opens a connection to the broker. An `amqps://` URL uses TLS, trusting
/// the system roots and, when given, `ca` (`SLIPWAY_AMQP_CA`, a PEM file).
pub async fn connect(url: &str, ca: Option<&Path>) -> Result<Connection> {
    let builder = DefaultConnectionBuilder::new()?;
    let builder = match uri(url) {
        Some(uri) => builder.with_uri(uri),
        // lapin says what is wrong with it.
        None => builder.with_uri_str(url.to_owned()),
    };
    Ok(builder
        .with_tls_config(tls_config(url, ca)?)
        .connect()
        .await?)
}

/// `url` parsed, with [`FRAME_MAX`] unless it sets `frame_max`.
fn uri(url: &str) -> Option<lapin::uri::AMQPUri> {
    let mut uri: lapin::uri::AMQPUri = url.parse().ok()?;
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    Some(uri)
}

/// The largest AMQP frame, in bytes, unless the URL's `frame_max` says
/// otherwise: lapin keeps a send and a receive buffer of 32 frames per
/// connection, fully written, which at the broker's default of 128 KiB
/// is 8 MiB of memory per service. Slipway's messages are a few hundred
/// bytes; a larger one just takes more frames.
const FRAME_MAX: u32 = 8192;

/// The TLS settings [`connect`] uses; a service calls it at start so a
/// `SLIPWAY_AMQP_CA` it cannot use stops it there.
pub fn tls_config(url: &str, ca: Option<&Path>) -> Result<lapin::tcp::OwnedTLSConfig> {
    let cert_chain = match ca {
        None => None,
        Some(_) if !url.starts_with("amqps://") => {
            return Err(Error::Tls(
                "SLIPWAY_AMQP_CA is set but SLIPWAY_AMQP_URL is not amqps://".to_owned(),
            ));
        }
        Some(path) => Some(read_ca(path)?),
    };
    Ok(lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain,
    })
}

/// The PEM text of `SLIPWAY_AMQP_CA`, checked to hold a certificate (lapin
/// would skip anything else without a word).
fn read_ca(path: &Path) -> Result<String> {
    let pem = std::fs::read_to_string(path).map_err(|e| {
        Error::Tls(format!(
            "SLIPWAY_AMQP_CA: cannot read {}: {e}",
            path.display()
        ))
    })?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::Tls(format!(
            "SLIPWAY_AMQP_CA: {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(pem)
}

async fn declare_tasks(channel: &Channel, topology: &Topology, queue: &str) -> Result<()> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            topology.queue_arguments(),
        )
        .await?;
    Ok(())
}

/// The events exchange and the notify queue bound to it. Both publisher and
/// consumer declare them, so an event published before any notifier ran
/// waits in the queue.
async fn declare_events(channel: &Channel, topology: &Topology) -> Result<()> {
    let exchange = topology.events_exchange();
    let queue = topology.notify_queue();
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            topology.queue_arguments(),
        )
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Publishes task and event messages and waits for the broker's confirm of
/// each.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    topology: Topology,
    exchange: String,
    /// Task queues declared on this channel: a message published to a queue
    /// that does not exist would be dropped, confirmed all the same.
    declared: Arc<Mutex<HashSet<String>>>,
}

impl Publisher {
    /// Declares the topology on a new confirm-mode channel.
    pub async fn open(connection: &Connection, topology: &Topology) -> Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let queue = topology.tasks_queue();
        declare_tasks(&channel, topology, &queue).await?;
        declare_events(&channel, topology).await?;
        Ok(Self {
            channel,
            topology: topology.clone(),
            exchange: topology.events_exchange(),
            declared: Arc::new(Mutex::new(HashSet::from([queue]))),
        })
    }

    /// Publishes one task to the queue of the labels it needs (`runs_on`,
    /// canonical form) with `headers`; returns once the broker has stored it.
    pub async fn publish(
        &self,
        message: TaskMessage,
        runs_on: &str,
        headers: &Headers,
    ) -> Result<()> {
        let queue = self.topology.tasks_queue_for(runs_on);
        let known = self
            .declared
            .lock()
            .map(|d| d.contains(&queue))
            .unwrap_or(false);
        if !known {
            declare_tasks(&self.channel, &self.topology, &queue).await?;
            if let Ok(mut declared) = self.declared.lock() {
                declared.insert(queue.clone());
            }
        }
        let body = serde_json::to_vec(&message)?;
        self.send("", &queue, &body, None, headers).await
    }

    /// Publishes one event, encoded by the caller (`slipway.v1.AlertEvent`
    /// in protobuf) with `headers`; returns once the broker has stored it.
    pub async fn publish_event(&self, id: &str, body: &[u8], headers: &Headers) -> Result<()> {
        self.send(
            &self.exchange,
            "",
            body,
            Some((id, "application/x-protobuf")),
            headers,
        )
        .await
    }

    /// `event`: the message id and content type of an event.
    async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        event: Option<(&str, &str)>,
        headers: &Headers,
    ) -> Result<()> {
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if !headers.is_empty() {
            properties = properties.with_headers(field_table(headers));
        }
        properties = match event {
            Some((id, content_type)) => properties
                .with_message_id(id.into())
                .with_content_type(content_type.into()),
            None => properties.with_content_type("application/json".into()),
        };
        let confirmation = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?
            .await?;
        if confirmation.is_nack() {
            return Err(Error::Nacked);
        }
        Ok(())
    }

    /// False once the channel or its connection closed.
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }
}

/// Opens a channel for consuming the task queues `queues` (declaring them),
/// with at most `prefetch` unacknowledged messages across all of its
/// consumers.
pub async fn consumer_channel(
    connection: &Connection,
    topology: &Topology,
    queues: &[String],
    prefetch: u16,
) -> Result<Channel> {
    let channel = connection.create_channel().await?;
    // RabbitMQ reads `global` as "shared by the channel's consumers".
    channel
        .basic_qos(prefetch, BasicQosOptions { global: true })
        .await?;
    for queue in queues {
        declare_tasks(&channel, topology, queue).await?;
    }
    Ok(channel)
}

/// Starts (or restarts) consuming the task queue `queue` on `channel`.
pub async fn start_consuming(
    channel: &Channel,
    queue: &str,
    consumer_tag: &str,
) -> Result<Consumer> {
    Ok(channel
        .basic_consume(
            queue.into(),
            consumer_tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?)
}

/// Stops consuming: the broker sends nothing more to this consumer.
pub async fn stop_consuming(channel: &Channel, consumer_tag: &str) -> Result<()> {
    channel
        .basic_cancel(
            consumer_tag.into(),
            lapin::options::BasicCancelOptions::default(),
        )
        .await?;
    Ok(())
}

/// Opens a channel consuming the notify queue, with at most `prefetch`
/// unacknowledged events.
pub async fn event_consumer(
    connection: &Connection,
    topology: &Topology,
    prefetch: u16,
    consumer_tag: &str,
) -> Result<(Channel, Consumer)> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    declare_events(&channel, topology).await?;
    let consumer = channel
        .basic_consume(
            topology.notify_queue().as_str().into(),
            consumer_tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

/// A queue as the broker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Messages ready for delivery (not those delivered and unacknowledged).
    pub ready: u32,
    /// Consumers attached to it.
    pub consumers: u32,
}

/// Looks at the queues with passive declares, on a channel of its own (a
/// missing queue closes the channel it was asked on): the unlabelled task
/// queue as `tasks`, the queue of each label set in `runs_on` (canonical
/// forms) as `tasks.<labels>`, and the notify queue as `notify`. A label
/// set's queue that does not exist (yet) is left out.
pub async fn depths(
    connection: &Connection,
    topology: &Topology,
    runs_on: &[String],
) -> Result<Vec<(String, Depth)>> {
    let mut channel = connection.create_channel().await?;
    let mut found = vec![
        (
            "tasks".to_owned(),
            depth(&channel, &topology.tasks_queue()).await?,
        ),
        (
            "notify".to_owned(),
            depth(&channel, &topology.notify_queue()).await?,
        ),
    ];
    for labels in runs_on.iter().filter(|l| !l.is_empty()) {
        match depth(&channel, &topology.tasks_queue_for(labels)).await {
            Ok(d) => found.push((format!("tasks.{labels}"), d)),
            Err(_) => channel = connection.create_channel().await?,
        }
    }
    let _ = channel.close(200, "looked".into()).await;
    Ok(found)
}

async fn depth(channel: &Channel, name: &str) -> Result<Depth> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare(name.into(), passive, FieldTable::default())
        .await?;
    Ok(Depth {
        ready: queue.message_count(),
        consumers: queue.consumer_count(),
    })
}

#[cfg(test)]
mod tests {
    use super::{FRAME_MAX, uri};

    #[test]
    fn frames_are_small_unless_the_url_says_otherwise() {
        let small = uri("amqp://guest:guest@127.0.0.1:5672/%2f").map(|u| u.query.frame_max);
        assert_eq!(small, Some(Some(FRAME_MAX)));
        let asked = uri("amqp://127.0.0.1:5672/%2f?frame_max=131072").map(|u| u.query.frame_max);
        assert_eq!(asked, Some(Some(131_072)));
        assert!(uri("not a url").is_none());
    }
}
