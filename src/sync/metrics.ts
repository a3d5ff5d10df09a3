/** The few numbers `/metrics` reports, in Prometheus' text format. No client library: five series. */

const latencyBucketsMs = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000];

export class SyncMetrics {
  connections = 0;
  subscriptions = 0;
  /** Events committed to the database (by any process), as this server's feed saw them. */
  eventsStored = 0;
  eventsDelivered = 0;
  readonly #buckets = latencyBucketsMs.map(() => 0);
  #latencyCount = 0;
  #latencySumMs = 0;

  /** Time from an event's commit (its timestamp) to its first send. */
  observeCommitToSend(ms: number): void {
    this.#latencyCount++;
    this.#latencySumMs += ms;
    latencyBucketsMs.forEach((bound, i) => {
      if (ms <= bound) this.#buckets[i]!++;
    });
  }

  render(): string {
    const lines = [
      '# HELP eventsync_connections Open client connections (WebSocket and SSE).',
      '# TYPE eventsync_connections gauge',
      `eventsync_connections ${this.connections}`,
      '# HELP eventsync_subscriptions Active subscriptions.',
      '# TYPE eventsync_subscriptions gauge',
      `eventsync_subscriptions ${this.subscriptions}`,
      '# HELP eventsync_events_stored_total Events committed to the database, as this server saw them.',
      '# TYPE eventsync_events_stored_total counter',
      `eventsync_events_stored_total ${this.eventsStored}`,
      '# HELP eventsync_events_delivered_total Event frames sent to clients.',
      '# TYPE eventsync_events_delivered_total counter',
      `eventsync_events_delivered_total ${this.eventsDelivered}`,
      '# HELP eventsync_commit_to_send_ms Time from an event commit to its first send to a client.',
      '# TYPE eventsync_commit_to_send_ms histogram',
      ...latencyBucketsMs.map(
        (bound, i) => `eventsync_commit_to_send_ms_bucket{le="${bound}"} ${this.#buckets[i]}`,
      ),
      `eventsync_commit_to_send_ms_bucket{le="+Inf"} ${this.#latencyCount}`,
      `eventsync_commit_to_send_ms_sum ${this.#latencySumMs}`,
      `eventsync_commit_to_send_ms_count ${this.#latencyCount}`,
    ];
    return `${lines.join('\n')}\n`;
  }
}
