import { Component, input, output } from '@angular/core';

/** An inline confirmation that says exactly what is about to happen. */
@Component({
  selector: 'sf-confirm',
  template: `
    <div class="confirm" role="alertdialog" [attr.aria-label]="message()">
      <span>{{ message() }}</span>
      <button type="button" class="danger" (click)="confirmed.emit()" [disabled]="busy()">{{ action() }}</button>
      <button type="button" (click)="cancelled.emit()" [disabled]="busy()">Cancel</button>
    </div>
  `,
  styles: `
    .confirm { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem; padding: 0.6rem 0.8rem;
      border: 1px solid #f59e0b; background: #fffbeb; border-radius: 6px; margin: 0.5rem 0; }
    span { flex: 1 1 16rem; }
  `,
})
export class ConfirmBar {
  readonly message = input.required<string>();
  readonly action = input('Confirm');
  readonly busy = input(false);
  readonly confirmed = output<void>();
  readonly cancelled = output<void>();
}
