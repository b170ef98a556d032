import { Throughput } from './throughput';

describe('Throughput', () => {
  it('turns cumulative counters into per-second rates', () => {
    const t = new Throughput();
    t.push([{ completed: 100, failed: 2 }, { completed: 50, failed: 0 }], 0);
    expect(t.processed).toEqual([]);
    t.push([{ completed: 110, failed: 4 }, { completed: 60, failed: 0 }], 2000);
    expect(t.processed).toEqual([11]);
    expect(t.failed).toEqual([1]);
  });

  it('keeps only the last samples', () => {
    const t = new Throughput(2);
    for (let i = 0; i <= 4; i++) t.push([{ completed: i * 10, failed: 0 }], i * 1000);
    expect(t.processed).toEqual([10, 10]);
  });

  it('starts over when the counters go back (a new deployment)', () => {
    const t = new Throughput();
    t.push([{ completed: 100, failed: 0 }], 0);
    t.push([{ completed: 120, failed: 0 }], 1000);
    t.push([{ completed: 5, failed: 0 }], 2000);
    expect(t.processed).toEqual([]);
    t.push([{ completed: 8, failed: 0 }], 3000);
    expect(t.processed).toEqual([3]);
  });
});
