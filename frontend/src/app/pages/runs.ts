import { Component, OnInit, inject, signal } from '@angular/core';
import { RouterLink } from '@angular/router';
import { explain } from '../core/api-error';
import { when } from '../core/format';
import { Graphql } from '../core/graphql';
import { RUN_FIELDS, WorkflowRun } from '../core/runs';
import { StateBadge } from '../shared/state-badge';

/** Workflow runs, newest first. */
@Component({
  selector: 'sf-runs',
  imports: [RouterLink, StateBadge],
  template: `
    <h1>Workflow runs</h1>
    @if (error()) { <p class="error" role="alert">{{ error() }}</p> }
    <section class="panel table-wrap">
      <table>
        <thead><tr><th>Run</th><th>Workflow</th><th>State</th><th class="num">Steps done</th><th>Started</th><th>Finished</th></tr></thead>
        <tbody>
          @for (run of runs(); track run.id) {
            <tr><td><a [routerLink]="['/runs', run.id]"><code>{{ run.id }}</code></a></td><td>{{ run.workflow }}</td>
              <td><sf-state [state]="run.state" /></td><td class="num">{{ run.stepsFinished }} / {{ run.stepsTotal }}</td>
              <td>{{ when(run.createdAt) }}</td><td>{{ when(run.finishedAt) }}</td></tr>
          } @empty {
            <tr><td colspan="6"><div class="empty">No runs yet. Every ingest starts one: <a routerLink="/submit">submit an ingest</a>.</div></td></tr>
          }
        </tbody>
      </table>
      @if (next()) { <p><button type="button" (click)="load(next())">Load more</button></p> }
    </section>
  `,
})
export class RunsPage implements OnInit {
  private readonly graphql = inject(Graphql);
  protected readonly when = when;
  protected readonly runs = signal<WorkflowRun[]>([]);
  protected readonly next = signal<string | null>(null);
  protected readonly error = signal<string | null>(null);

  ngOnInit(): void {
    void this.load(null);
  }

  async load(after: string | null): Promise<void> {
    try {
      const data = await this.graphql.request<{
        workflowRuns: { nodes: WorkflowRun[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
      }>(`query Runs($after: String) { workflowRuns(first: 50, after: $after) { pageInfo { hasNextPage endCursor } nodes { ${RUN_FIELDS} } } }`, { after });
      this.runs.update((runs) => (after ? [...runs, ...data.workflowRuns.nodes] : data.workflowRuns.nodes));
      this.next.set(data.workflowRuns.pageInfo.hasNextPage ? data.workflowRuns.pageInfo.endCursor : null);
    } catch (e) {
      this.error.set(explain(e));
    }
  }
}
