//! The command line of `warren ctl`: global options (target, credentials, vhost, output) and one
//! subcommand per operation, named as rabbitmqctl/rabbitmqadmin name them.

use super::output::Format;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "warren ctl",
    about = "Operate a Warren (or RabbitMQ) node through its management HTTP API",
    after_help = "Exit codes: 0 done, 1 the API refused (its error and reason are printed), \
                  2 usage error, 69 the API could not be reached."
)]
pub struct Cli {
    /// The management API, http://host:port[/prefix].
    #[arg(
        long,
        global = true,
        env = "WARREN_CTL_URL",
        default_value = "http://localhost:15672"
    )]
    pub url: String,
    /// The API user (`--user` names the subject of user commands).
    #[arg(
        long = "username",
        short = 'u',
        global = true,
        env = "WARREN_CTL_USER",
        default_value = "guest"
    )]
    pub username: String,
    #[arg(
        long,
        global = true,
        env = "WARREN_CTL_PASSWORD",
        default_value = "guest",
        hide_env_values = true
    )]
    pub password: String,
    /// The virtual host that commands act in.
    #[arg(long, short = 'V', global = true, default_value = "/")]
    pub vhost: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List objects of one kind (in --vhost for queues, exchanges, bindings, consumers, policies).
    List(ListArgs),
    /// Declare a queue, exchange or binding.
    #[command(subcommand)]
    Declare(Declare),
    /// Delete a queue, exchange or binding.
    #[command(subcommand)]
    Delete(Delete),
    /// Remove every ready message of a queue.
    #[command(subcommand)]
    Purge(Purge),
    /// Publish a message through an exchange.
    Publish(PublishArgs),
    /// Get (and by default requeue) messages from a queue.
    Get(GetArgs),
    #[command(name = "add_user", alias = "add-user", about = "Create a user")]
    AddUser(AddUserArgs),
    #[command(name = "delete_user", alias = "delete-user", about = "Delete a user")]
    DeleteUser(NameArg),
    #[command(
        name = "change_password",
        alias = "change-password",
        about = "Set a user's password, keeping its tags"
    )]
    ChangePassword(ChangePasswordArgs),
    #[command(
        name = "set_user_tags",
        alias = "set-user-tags",
        about = "Set a user's tags, keeping its password"
    )]
    SetUserTags(SetUserTagsArgs),
    #[command(
        name = "add_vhost",
        alias = "add-vhost",
        about = "Create a virtual host"
    )]
    AddVhost(AddVhostArgs),
    #[command(
        name = "delete_vhost",
        alias = "delete-vhost",
        about = "Delete a virtual host"
    )]
    DeleteVhost(NameArg),
    #[command(
        name = "set_permissions",
        alias = "set-permissions",
        about = "Set a user's permissions in --vhost"
    )]
    SetPermissions(SetPermissionsArgs),
    #[command(
        name = "clear_permissions",
        alias = "clear-permissions",
        about = "Remove a user's permissions in --vhost"
    )]
    ClearPermissions(UserArg),
    #[command(
        name = "set_topic_permissions",
        alias = "set-topic-permissions",
        about = "Set a user's topic permissions on an exchange in --vhost"
    )]
    SetTopicPermissions(SetTopicPermissionsArgs),
    #[command(
        name = "clear_topic_permissions",
        alias = "clear-topic-permissions",
        about = "Remove a user's topic permissions in --vhost"
    )]
    ClearTopicPermissions(UserArg),
    #[command(
        name = "set_policy",
        alias = "set-policy",
        about = "Set a policy in --vhost"
    )]
    SetPolicy(SetPolicyArgs),
    #[command(
        name = "clear_policy",
        alias = "clear-policy",
        about = "Remove a policy"
    )]
    ClearPolicy(NameArg),
    #[command(
        name = "set_vhost_limits",
        alias = "set-vhost-limits",
        about = "Set --vhost's limits, e.g. '{\"max-connections\": 10, \"max-queues\": 100}'"
    )]
    SetVhostLimits(LimitsArgs),
    #[command(
        name = "clear_vhost_limits",
        alias = "clear-vhost-limits",
        about = "Remove --vhost's limits (all, or those named)"
    )]
    ClearVhostLimits(ClearLimitsArgs),
    #[command(
        name = "close_connection",
        alias = "close-connection",
        about = "Close a client connection (by its name from `list connections`)"
    )]
    CloseConnection(CloseConnectionArgs),
    /// Export definitions (users, vhosts, permissions, policies, queues, exchanges, bindings).
    Export(ExportArgs),
    /// Import definitions from a file ('-' for standard input).
    Import(ImportArgs),
    #[command(
        name = "trace_on",
        alias = "trace-on",
        about = "Start the firehose tracer in --vhost"
    )]
    TraceOn,
    #[command(
        name = "trace_off",
        alias = "trace-off",
        about = "Stop the firehose tracer in --vhost"
    )]
    TraceOff,
    /// The node's overview: version, listeners, object and message totals.
    Status(FormatArg),
    /// A health check; exits 1 when it fails.
    Health(HealthArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Queues,
    Exchanges,
    Bindings,
    Connections,
    Channels,
    Consumers,
    Users,
    Vhosts,
    Permissions,
    #[value(name = "topic_permissions", alias = "topic-permissions")]
    TopicPermissions,
    Policies,
}

#[derive(Args, Debug)]
pub struct FormatArg {
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(value_enum)]
    pub kind: Kind,
    /// Columns to show, comma-separated; dotted keys reach nested fields (message_stats.publish).
    #[arg(long, short = 'c', value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Every vhost instead of --vhost.
    #[arg(long)]
    pub all_vhosts: bool,
    #[command(flatten)]
    pub format: FormatArg,
}

#[derive(Subcommand, Debug)]
pub enum Declare {
    /// Declare a queue in --vhost.
    Queue(DeclareQueueArgs),
    /// Declare an exchange in --vhost.
    Exchange(DeclareExchangeArgs),
    /// Bind a queue or exchange to a source exchange.
    Binding(BindingArgs),
}

#[derive(Args, Debug)]
pub struct DeclareQueueArgs {
    #[arg(long)]
    pub name: String,
    /// classic, quorum or stream.
    #[arg(long = "type", alias = "queue-type")]
    pub queue_type: Option<String>,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub durable: bool,
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub auto_delete: bool,
    /// Queue arguments as a JSON object, e.g. '{"x-max-length": 10}'.
    #[arg(long, default_value = "{}")]
    pub arguments: String,
}

#[derive(Args, Debug)]
pub struct DeclareExchangeArgs {
    #[arg(long)]
    pub name: String,
    /// direct, fanout, topic, headers.
    #[arg(long = "type", default_value = "direct")]
    pub exchange_type: String,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub durable: bool,
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub auto_delete: bool,
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub internal: bool,
    /// Exchange arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    pub arguments: String,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DestinationType {
    Queue,
    Exchange,
}

#[derive(Args, Debug)]
pub struct BindingArgs {
    #[arg(long)]
    pub source: String,
    #[arg(long)]
    pub destination: String,
    #[arg(long, value_enum, default_value = "queue")]
    pub destination_type: DestinationType,
    #[arg(long, default_value = "")]
    pub routing_key: String,
    /// Binding arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    pub arguments: String,
}

#[derive(Subcommand, Debug)]
pub enum Delete {
    /// Delete a queue.
    Queue(DeleteQueueArgs),
    /// Delete an exchange.
    Exchange(DeleteExchangeArgs),
    /// Remove the bindings between a source and a destination with this routing key.
    Binding(BindingArgs),
}

#[derive(Args, Debug)]
pub struct DeleteQueueArgs {
    #[arg(long)]
    pub name: String,
    /// Only if it has no consumers.
    #[arg(long)]
    pub if_unused: bool,
    /// Only if it holds no messages.
    #[arg(long)]
    pub if_empty: bool,
}

#[derive(Args, Debug)]
pub struct DeleteExchangeArgs {
    #[arg(long)]
    pub name: String,
    /// Only if it has no bindings.
    #[arg(long)]
    pub if_unused: bool,
}

#[derive(Subcommand, Debug)]
pub enum Purge {
    /// Purge a queue.
    Queue(NameArg),
}

#[derive(Args, Debug)]
pub struct NameArg {
    #[arg(long)]
    pub name: String,
}

#[derive(Args, Debug)]
pub struct UserArg {
    #[arg(long)]
    pub user: String,
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The exchange ('' or amq.default for the default exchange).
    #[arg(long, default_value = "")]
    pub exchange: String,
    #[arg(long, default_value = "")]
    pub routing_key: String,
    /// The body; read from standard input when absent.
    #[arg(long)]
    pub payload: Option<String>,
    /// Message properties as a JSON object, e.g. '{"delivery_mode": 2, "headers": {"a": 1}}'.
    #[arg(long, default_value = "{}")]
    pub properties: String,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum AckMode {
    #[value(name = "ack_requeue_true")]
    AckRequeueTrue,
    #[value(name = "ack_requeue_false")]
    AckRequeueFalse,
    #[value(name = "reject_requeue_true")]
    RejectRequeueTrue,
    #[value(name = "reject_requeue_false")]
    RejectRequeueFalse,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[arg(long)]
    pub queue: String,
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    #[arg(long, value_enum, default_value = "ack_requeue_true")]
    pub ackmode: AckMode,
    /// Truncate payloads longer than this many bytes.
    #[arg(long)]
    pub truncate: Option<u64>,
    #[command(flatten)]
    pub format: FormatArg,
}

#[derive(Args, Debug)]
pub struct AddUserArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long = "user-password", alias = "new-password")]
    pub user_password: String,
    /// Comma-separated: administrator, monitoring, policymaker, management, impersonator.
    #[arg(long, default_value = "")]
    pub tags: String,
}

#[derive(Args, Debug)]
pub struct ChangePasswordArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long = "new-password")]
    pub new_password: String,
}

#[derive(Args, Debug)]
pub struct SetUserTagsArgs {
    #[arg(long)]
    pub name: String,
    /// Comma-separated tags (empty for none).
    #[arg(long, default_value = "")]
    pub tags: String,
}

#[derive(Args, Debug)]
pub struct AddVhostArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub description: Option<String>,
    /// Comma-separated.
    #[arg(long)]
    pub tags: Option<String>,
    #[arg(long)]
    pub default_queue_type: Option<String>,
    #[arg(long)]
    pub tracing: bool,
}

#[derive(Args, Debug)]
pub struct SetPermissionsArgs {
    #[arg(long)]
    pub user: String,
    #[arg(long)]
    pub configure: String,
    #[arg(long)]
    pub write: String,
    #[arg(long)]
    pub read: String,
}

#[derive(Args, Debug)]
pub struct SetTopicPermissionsArgs {
    #[arg(long)]
    pub user: String,
    #[arg(long)]
    pub exchange: String,
    #[arg(long)]
    pub write: String,
    #[arg(long)]
    pub read: String,
}

#[derive(Args, Debug)]
pub struct SetPolicyArgs {
    #[arg(long)]
    pub name: String,
    /// A regular expression over queue/exchange names.
    #[arg(long)]
    pub pattern: String,
    /// The policy's keys as a JSON object, e.g. '{"max-length": 10}'.
    #[arg(long)]
    pub definition: String,
    #[arg(long, default_value_t = 0)]
    pub priority: i64,
    /// queues, exchanges, all (and classic_queues, quorum_queues, streams).
    #[arg(long, default_value = "all")]
    pub apply_to: String,
}

#[derive(Args, Debug)]
pub struct LimitsArgs {
    /// A JSON object of limits: max-connections, max-queues.
    #[arg(long)]
    pub definition: String,
}

#[derive(Args, Debug)]
pub struct ClearLimitsArgs {
    /// Only these limits (default: max-connections and max-queues).
    #[arg(long, value_delimiter = ',')]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CloseConnectionArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "Closed via warren ctl")]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Where to write; standard output when absent or '-'.
    pub file: Option<String>,
    /// Only --vhost's definitions (RabbitMQ's per-vhost export).
    #[arg(long)]
    pub vhost_only: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    pub file: String,
    /// Into --vhost only (a per-vhost document).
    #[arg(long)]
    pub vhost_only: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum HealthCheck {
    Alarms,
    #[value(name = "local_alarms", alias = "local-alarms")]
    LocalAlarms,
    #[value(name = "virtual_hosts", alias = "virtual-hosts")]
    VirtualHosts,
    /// Declare, publish to and get from the `aliveness-test` queue of --vhost.
    Aliveness,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    #[arg(value_enum, default_value = "alarms")]
    pub check: HealthCheck,
}
