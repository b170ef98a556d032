export interface QueueCounters {
  completed: number;
  failed: number;
}

/**
 * Jobs processed and failed per second, from the cumulative counters each `queueStats`
 * tick carries. Keeps the last `capacity` samples; a counter that goes down (a new
 * deployment) restarts the series instead of drawing a negative rate.
 */
export class Throughput {
  readonly processed: number[] = [];
  readonly failed: number[] = [];
  private last: { completed: number; failed: number; at: number } | null = null;

  constructor(private readonly capacity = 300) {}

  push(queues: readonly QueueCounters[], at: number): void {
    const completed = queues.reduce((sum, q) => sum + q.completed, 0);
    const failed = queues.reduce((sum, q) => sum + q.failed, 0);
    const previous = this.last;
    this.last = { completed, failed, at };
    if (!previous || at <= previous.at) return;
    if (completed < previous.completed || failed < previous.failed) {
      this.processed.length = 0;
      this.failed.length = 0;
      return;
    }
    const seconds = (at - previous.at) / 1000;
    this.add(this.processed, (completed + failed - previous.completed - previous.failed) / seconds);
    this.add(this.failed, (failed - previous.failed) / seconds);
  }

  private add(series: number[], value: number): void {
    series.push(value);
    if (series.length > this.capacity) series.splice(0, series.length - this.capacity);
  }
}
