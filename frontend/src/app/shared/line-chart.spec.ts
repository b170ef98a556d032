import { TestBed } from '@angular/core/testing';
import { LineChart, points } from './line-chart';

describe('LineChart', () => {
  it('scales the highest value to the top edge and zero to the axis', () => {
    expect(points([0, 5, 10], 10)).toBe('0,156 300,80 600,4');
    expect(points([], 10)).toBe('');
  });

  it('draws one line per series with its latest value in the legend', async () => {
    const fixture = TestBed.createComponent(LineChart);
    fixture.componentRef.setInput('series', [
      { label: 'processed/s', color: '#00f', values: [1, 4, 2] },
      { label: 'failed/s', color: '#f00', values: [0, 1, 0] },
    ]);
    fixture.componentRef.setInput('caption', 'per second');
    await fixture.whenStable();
    const element = fixture.nativeElement as HTMLElement;
    expect(element.querySelectorAll('polyline')).toHaveLength(2);
    expect(element.querySelector('[data-series="processed/s"]')?.getAttribute('points')).toBe('0,118 300,4 600,80');
    expect(element.textContent).toContain('processed/s: 2');
    expect(element.textContent).toContain('max 4');
  });
});
