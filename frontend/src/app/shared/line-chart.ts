import { Component, computed, input } from '@angular/core';

export interface Series {
  label: string;
  color: string;
  values: readonly number[];
}

const WIDTH = 600;
const HEIGHT = 160;
const PAD = 4;

/** A small SVG line chart: series share the y axis, which starts at zero. */
@Component({
  selector: 'sf-line-chart',
  template: `
    <figure class="chart">
      <svg [attr.viewBox]="'0 0 ' + width + ' ' + height" preserveAspectRatio="none" role="img"
           [attr.aria-label]="caption()">
        <line [attr.x1]="0" [attr.x2]="width" [attr.y1]="height - pad" [attr.y2]="height - pad" class="axis" />
        @for (line of lines(); track line.label) {
          <polyline [attr.points]="line.points" [attr.stroke]="line.color" fill="none" stroke-width="2"
                    vector-effect="non-scaling-stroke" [attr.data-series]="line.label" />
        }
      </svg>
      <figcaption>
        <span>{{ caption() }}</span>
        @for (line of lines(); track line.label) {
          <span class="key"><i [style.background]="line.color"></i>{{ line.label }}: {{ line.last }}</span>
        }
        <span class="max">max {{ max() }}</span>
      </figcaption>
    </figure>
  `,
  styles: `
    .chart { margin: 0; }
    svg { width: 100%; height: 160px; background: var(--panel); border: 1px solid var(--border); border-radius: 6px; }
    .axis { stroke: var(--border); }
    figcaption { display: flex; flex-wrap: wrap; gap: 0.75rem; font-size: 0.8rem; color: var(--muted); margin-top: 0.25rem; }
    .key i { display: inline-block; width: 0.7rem; height: 0.7rem; border-radius: 2px; margin-right: 0.25rem; }
    .max { margin-left: auto; }
  `,
})
export class LineChart {
  readonly series = input.required<readonly Series[]>();
  readonly caption = input('');
  readonly unit = input('');
  protected readonly width = WIDTH;
  protected readonly height = HEIGHT;
  protected readonly pad = PAD;

  readonly max = computed(() => {
    const all = this.series().flatMap((s) => s.values);
    return all.length ? round(Math.max(...all)) : 0;
  });

  readonly lines = computed(() => {
    const top = Math.max(this.max(), 1e-9);
    return this.series().map((s) => ({
      label: s.label,
      color: s.color,
      last: s.values.length ? `${round(s.values[s.values.length - 1])}${this.unit()}` : '—',
      points: points(s.values, top),
    }));
  });
}

/** Polyline points spread over the full width, scaled so `top` touches the upper edge. */
export function points(values: readonly number[], top: number): string {
  if (values.length === 0) return '';
  const step = values.length > 1 ? WIDTH / (values.length - 1) : 0;
  return values
    .map((v, i) => {
      const x = values.length > 1 ? i * step : WIDTH / 2;
      const y = HEIGHT - PAD - (Math.max(v, 0) / top) * (HEIGHT - 2 * PAD);
      return `${round(x)},${round(y)}`;
    })
    .join(' ');
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
