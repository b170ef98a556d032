import { Component, computed, input } from '@angular/core';

/** A job's or run's state as a coloured label. */
@Component({
  selector: 'sf-state',
  template: `<span class="state" [class]="tone()" [attr.data-state]="state()">{{ label() }}</span>`,
  styles: `
    .state { display: inline-block; padding: 0.1rem 0.5rem; border-radius: 999px; font-size: 0.75rem;
      font-weight: 600; letter-spacing: 0.02em; background: var(--muted-bg); color: var(--text); white-space: nowrap; }
    .ok { background: #dcfce7; color: #166534; }
    .busy { background: #dbeafe; color: #1e40af; }
    .wait { background: #fef9c3; color: #854d0e; }
    .bad { background: #fee2e2; color: #991b1b; }
  `,
})
export class StateBadge {
  readonly state = input.required<string | null | undefined>();
  readonly label = computed(() => (this.state() ?? 'UNKNOWN').replace('_', ' '));
  readonly tone = computed(() => toneOf(this.state()));
}

export function toneOf(state: string | null | undefined): string {
  switch (state) {
    case 'SUCCEEDED':
    case 'RESOLVED':
    case 'DELIVERED':
      return 'state ok';
    case 'RUNNING':
    case 'QUEUED':
      return 'state busy';
    case 'SCHEDULED':
    case 'RETRYING':
    case 'PENDING':
    case 'OPEN':
      return 'state wait';
    case 'DEAD':
    case 'FAILED':
    case 'CANCELLED':
      return 'state bad';
    default:
      return 'state';
  }
}
