import { Component, DestroyRef, OnInit, computed, inject, signal } from '@angular/core';
import { RouterLink } from '@angular/router';
import { explain } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import { JobKind } from '../core/jobs';
import { Live, LiveHandle } from '../core/live';
import { Session } from '../core/session';
import { ConfirmBar } from '../shared/confirm-bar';

interface DeadGroup {
  kind: JobKind | null;
  fingerprint: string;
  count: number;
  sampleError: string;
  lastDiedAt: string;
}
interface DeadJob {
  id: string;
  kind: JobKind | null;
  error: string;
  fingerprint: string;
  attempts: number;
  maxAttempts: number;
  workflowRunId: string | null;
  diedAt: string;
}
interface AuditEntry {
  id: string;
  actorUserId: string | null;
  action: string;
  target: string;
  details: unknown;
  at: string;
}
interface Pending {
  message: string;
  action: string;
  run: () => Promise<string>;
}

const DEAD_FIELDS = 'id kind error fingerprint attempts maxAttempts workflowRunId diedAt';
/** The most ids `discardDeadJobs` takes in one call. */
const DISCARD_CHUNK = 1000;

/** "3 dead jobs", "1 dead job". */
export function jobsCount(n: number): string {
  return `${n} dead job${n === 1 ? '' : 's'}`;
}

/** Dead jobs grouped by how they failed; admins requeue or discard them, others read. */
@Component({
  selector: 'sf-dead',
  imports: [RouterLink, ConfirmBar],
  template: `
    <h1>Dead jobs</h1>
    @if (!admin()) {
      <p class="notice" data-testid="read-only">Read only: requeueing and discarding dead jobs needs the admin role.</p>
    }
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    @if (done()) { <p class="notice" role="status" data-testid="done">{{ done() }}</p> }
    @if (pending(); as p) {
      <sf-confirm [message]="p.message" [action]="p.action" [busy]="busy()" (confirmed)="confirm()" (cancelled)="pending.set(null)" />
    }
    @if (progress(); as pr) {
      <div class="progress" role="progressbar" [attr.aria-valuenow]="pr.done" [attr.aria-valuemax]="pr.total">
        <div [style.width.%]="(100 * pr.done) / pr.total"></div>
      </div>
      <p class="muted">{{ pr.done }} of {{ pr.total }}…</p>
    }
    <section class="panel">
      <h2>Groups</h2>
      <div class="table-wrap">
        <table data-testid="groups">
          <thead><tr><th>Kind</th><th class="num">Jobs</th><th>Error</th><th>Last died</th><th></th></tr></thead>
          <tbody>
            @for (g of groups(); track g.fingerprint) {
              <tr [class.chosen]="group()?.fingerprint === g.fingerprint" [attr.data-fingerprint]="g.fingerprint">
                <td>{{ g.kind?.toLowerCase() }}</td><td class="num">{{ g.count }}</td><td class="err">{{ g.sampleError }}</td>
                <td>{{ when(g.lastDiedAt) }}</td>
                <td class="acts">
                  <button type="button" (click)="chooseGroup(g)">{{ group()?.fingerprint === g.fingerprint ? 'Showing' : 'Show' }}</button>
                  @if (admin()) {
                    <button type="button" (click)="askRequeueGroup(g)" [disabled]="busy()">Requeue all</button>
                    <button type="button" (click)="askDiscardGroup(g)" [disabled]="busy()">Discard all</button>
                  }
                </td>
              </tr>
            } @empty {
              <tr><td colspan="5"><div class="empty">No dead jobs. Jobs land here when they run out of attempts or fail permanently.</div></td></tr>
            }
          </tbody>
        </table>
      </div>
    </section>
    <section class="panel">
      <div class="row head">
        <h2>{{ group() ? 'Jobs of the chosen group' : 'All dead jobs' }}</h2>
        @if (group()) { <button type="button" (click)="chooseGroup(null)">Show all</button> }
        @if (admin() && selected().size > 0) {
          <span class="muted">{{ selected().size }} selected</span>
          <button type="button" class="primary" (click)="askRequeueSelected()" [disabled]="busy()" data-testid="requeue-selected">Requeue selected</button>
          <button type="button" (click)="askDiscardSelected()" [disabled]="busy()">Discard selected</button>
        }
      </div>
      <div class="table-wrap">
        <table data-testid="dead-jobs">
          <thead><tr>@if (admin()) { <th><input type="checkbox" aria-label="Select all" [checked]="allSelected()" (change)="toggleAll()" /></th> }
            <th>Job</th><th>Kind</th><th class="num">Attempts</th><th>Error</th><th>Died</th>@if (admin()) { <th></th> }</tr></thead>
          <tbody>
            @for (job of jobs(); track job.id) {
              <tr [attr.data-dead]="job.id">
                @if (admin()) { <td><input type="checkbox" [attr.aria-label]="'Select ' + job.id" [checked]="selected().has(job.id)" (change)="toggle(job.id)" /></td> }
                <td><a [routerLink]="['/jobs', job.id]"><code>{{ job.id.slice(-10) }}</code></a></td>
                <td>{{ job.kind?.toLowerCase() }}</td><td class="num">{{ job.attempts }} / {{ job.maxAttempts }}</td>
                <td class="err">{{ job.error }}</td><td>{{ when(job.diedAt) }}</td>
                @if (admin()) {
                  <td class="acts">
                    <button type="button" (click)="askRequeueOne(job)" [disabled]="busy()">Requeue</button>
                    <button type="button" (click)="askDiscardOne(job)" [disabled]="busy()">Discard</button>
                  </td>
                }
              </tr>
            } @empty {
              <tr><td [attr.colspan]="admin() ? 7 : 5" class="muted">Nothing dead here.</td></tr>
            }
          </tbody>
        </table>
      </div>
    </section>
    @if (admin()) {
      <section class="panel">
        <h2>Audit trail</h2>
        <ul class="audit" data-testid="audit">
          @for (entry of audit(); track entry.id) {
            <li><code>{{ when(entry.at) }}</code> user {{ entry.actorUserId }} · <strong>{{ entry.action }}</strong> {{ entry.target }}</li>
          } @empty { <li class="muted">No requeue or discard yet.</li> }
        </ul>
      </section>
    }
  `,
  styles: `
    .err { color: #991b1b; font-size: 0.8rem; word-break: break-word; max-width: 28rem; }
    .acts { white-space: nowrap; } .acts button { margin-right: 0.25rem; }
    tr.chosen { background: #eff6ff; }
    .head h2 { margin: 0; flex: 1; }
    .audit { margin: 0; padding-left: 1.1rem; font-size: 0.85rem; }
  `,
})
export class DeadPage implements OnInit {
  private readonly graphql = inject(Graphql);
  private readonly live = inject(Live);
  private readonly session = inject(Session);
  private readonly destroyRef = inject(DestroyRef);
  protected readonly when = when;
  protected readonly admin = computed(() => this.session.can('ADMIN'));
  protected readonly groups = signal<DeadGroup[]>([]);
  protected readonly group = signal<DeadGroup | null>(null);
  protected readonly jobs = signal<DeadJob[]>([]);
  protected readonly selected = signal<ReadonlySet<string>>(new Set());
  protected readonly allSelected = computed(() => this.jobs().length > 0 && this.jobs().every((j) => this.selected().has(j.id)));
  protected readonly audit = signal<AuditEntry[]>([]);
  protected readonly pending = signal<Pending | null>(null);
  protected readonly busy = signal(false);
  protected readonly progress = signal<{ done: number; total: number } | null>(null);
  protected readonly error = signal<string | null>(null);
  protected readonly done = signal<string | null>(null);
  private reloadTimers: ReturnType<typeof setTimeout>[] = [];

  ngOnInit(): void {
    let dying: LiveHandle | null = null;
    let destroyed = false;
    // Deaths after the first load's cursor reload the page, so none falls between the two.
    void this.reload().then((cursor) => {
      if (destroyed) return;
      dying = this.live.subscribe<{ jobUpdates: { cursor: string } }>({
        query: `subscription Dying($after: String) { jobUpdates(filter: { states: [DEAD] }, after: $after) { cursor } }`,
        cursor: cursor ?? undefined,
        variables: (after) => ({ after: after ?? null }),
        cursorOf: (data) => data.jobUpdates.cursor,
        next: () => this.reloadSoon(),
        expired: () => this.reloadSoon(),
      });
    });
    this.destroyRef.onDestroy(() => {
      destroyed = true;
      dying?.close();
      this.reloadTimers.forEach(clearTimeout);
    });
  }

  /** The list comes from the ledger, a moment behind Redis: read now and once more later. */
  private reloadSoon(): void {
    this.reloadTimers.forEach(clearTimeout);
    this.reloadTimers = [300, 2000].map((ms) => setTimeout(() => void this.reload(), ms));
  }

  /** Reads groups, jobs and the audit trail; answers the list's event cursor. */
  async reload(): Promise<string | null> {
    try {
      const g = this.group();
      const filter = g ? { fingerprint: g.fingerprint, kinds: g.kind ? [g.kind] : null } : null;
      const data = await this.graphql.request<{
        deadJobGroups: DeadGroup[];
        deadJobs: { eventCursor: string | null; nodes: DeadJob[] };
      }>(
        `query Dead($filter: DeadJobsFilter) { deadJobGroups { kind fingerprint count sampleError lastDiedAt }
          deadJobs(filter: $filter, first: 100) { eventCursor nodes { ${DEAD_FIELDS} } } }`,
        { filter },
      );
      this.groups.set(data.deadJobGroups);
      this.jobs.set(data.deadJobs.nodes);
      const present = new Set(data.deadJobs.nodes.map((j) => j.id));
      this.selected.update((s) => new Set([...s].filter((id) => present.has(id))));
      if (this.admin()) await this.loadAudit();
      return data.deadJobs.eventCursor;
    } catch (e) {
      this.error.set(explain(e));
      return null;
    }
  }

  private async loadAudit(): Promise<void> {
    const data = await this.graphql.request<{ auditLog: { nodes: AuditEntry[] } }>(
      `{ auditLog(first: 20, actionPrefix: "dead_job.") { nodes { id actorUserId action target details at } } }`,
    );
    this.audit.set(data.auditLog.nodes);
  }

  chooseGroup(group: DeadGroup | null): void {
    this.group.set(group);
    this.selected.set(new Set());
    void this.reload();
  }

  toggle(id: string): void {
    this.selected.update((s) => {
      const next = new Set(s);
      if (!next.delete(id)) next.add(id);
      return next;
    });
  }

  toggleAll(): void {
    this.selected.set(this.allSelected() ? new Set() : new Set(this.jobs().map((j) => j.id)));
  }

  askRequeueOne(job: DeadJob): void {
    this.ask(`Requeue ${jobsCount(1)} (${job.id})? It keeps its id and history and gets a new round of attempts.`, 'Requeue', async () => {
      await this.graphql.request(`mutation R($id: ID!) { requeueDeadJob(id: $id) { id } }`, { id: job.id });
      return `Requeued ${jobsCount(1)}.`;
    });
  }

  askDiscardOne(job: DeadJob): void {
    this.ask(`Discard ${jobsCount(1)} (${job.id}) for good? This cannot be undone.`, 'Discard', async () => {
      return `Discarded ${jobsCount(await this.discard([job.id]))}.`;
    });
  }

  askRequeueSelected(): void {
    const ids = [...this.selected()];
    this.ask(`Requeue ${jobsCount(ids.length)}?`, `Requeue ${ids.length}`, async () => {
      const n = await this.requeueWhere({ ids });
      return `Requeued ${jobsCount(n)}.`;
    });
  }

  askDiscardSelected(): void {
    const ids = [...this.selected()];
    this.ask(`Discard ${jobsCount(ids.length)} for good? This cannot be undone.`, `Discard ${ids.length}`, async () => {
      return `Discarded ${jobsCount(await this.discard(ids))}.`;
    });
  }

  askRequeueGroup(group: DeadGroup): void {
    this.ask(`Requeue all ${jobsCount(group.count)} of this group (${group.kind?.toLowerCase()}: ${group.sampleError})?`, `Requeue ${group.count}`, async () => {
      const n = await this.requeueWhere({ fingerprint: group.fingerprint, kinds: group.kind ? [group.kind] : null });
      return `Requeued ${jobsCount(n)}.`;
    });
  }

  askDiscardGroup(group: DeadGroup): void {
    this.ask(`Discard all ${jobsCount(group.count)} of this group for good? This cannot be undone.`, `Discard ${group.count}`, async () => {
      return `Discarded ${jobsCount(await this.discard(await this.idsOf(group)))}.`;
    });
  }

  private ask(message: string, action: string, run: () => Promise<string>): void {
    this.done.set(null);
    this.pending.set({ message, action, run });
  }

  async confirm(): Promise<void> {
    const pending = this.pending();
    if (!pending) return;
    this.busy.set(true);
    this.error.set(null);
    try {
      this.done.set(await pending.run());
      this.selected.set(new Set());
    } catch (e) {
      this.error.set(explain(e));
    } finally {
      this.busy.set(false);
      this.progress.set(null);
      this.pending.set(null);
      await this.reload();
    }
  }

  private async requeueWhere(filter: Record<string, unknown>): Promise<number> {
    const data = await this.graphql.request<{ requeueDeadJobs: number }>(
      `mutation RequeueMany($filter: RequeueDeadJobsFilter!) { requeueDeadJobs(filter: $filter) }`,
      { filter },
    );
    return data.requeueDeadJobs;
  }

  /** Discards in calls of up to 1,000 ids, showing progress; answers how many were discarded. */
  private async discard(ids: readonly string[]): Promise<number> {
    let discarded = 0;
    this.progress.set({ done: 0, total: ids.length });
    for (let start = 0; start < ids.length; start += DISCARD_CHUNK) {
      const chunk = ids.slice(start, start + DISCARD_CHUNK);
      try {
        const data = await this.graphql.request<{ discardDeadJobs: number }>(
          `mutation DiscardMany($ids: [ID!]!) { discardDeadJobs(ids: $ids) }`,
          { ids: chunk },
        );
        discarded += data.discardDeadJobs;
      } catch (e) {
        throw new Error(`Discarded ${discarded} of ${ids.length}, then: ${explain(e)}`, { cause: e });
      }
      this.progress.set({ done: start + chunk.length, total: ids.length });
    }
    return discarded;
  }

  private async idsOf(group: DeadGroup): Promise<string[]> {
    const ids: string[] = [];
    let after: string | null = null;
    for (;;) {
      const data: { deadJobs: { nodes: { id: string }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } } } =
        await this.graphql.request(
          `query Ids($filter: DeadJobsFilter, $after: String) { deadJobs(filter: $filter, first: 100, after: $after) {
            nodes { id } pageInfo { hasNextPage endCursor } } }`,
          { filter: { fingerprint: group.fingerprint, kinds: group.kind ? [group.kind] : null }, after },
        );
      ids.push(...data.deadJobs.nodes.map((n) => n.id));
      if (!data.deadJobs.pageInfo.hasNextPage) return ids;
      after = data.deadJobs.pageInfo.endCursor;
    }
  }
}
