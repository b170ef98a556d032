import { Component } from '@angular/core';
import { RouterLink } from '@angular/router';

@Component({
  selector: 'sf-not-found',
  imports: [RouterLink],
  template: `<div class="empty"><h1>Nothing here</h1><p>This address matches no page. Go to the <a routerLink="/">overview</a>.</p></div>`,
})
export class NotFoundPage {}
