import { RuleRow, formOf, numberOrNull, ruleChanges } from './rules';

const above: RuleRow = {
  id: '7',
  kind: 'ABOVE',
  threshold: 80,
  clearThreshold: 75,
  forReadings: 1,
  silenceSeconds: null,
  throttleSeconds: 300,
  enabled: true,
  inBreach: false,
  channelIds: [],
  version: 3,
};

describe('rule edits', () => {
  it('sends only the fields the form changed', () => {
    expect(ruleChanges(above, formOf(above))).toEqual({});
    expect(ruleChanges(above, { ...formOf(above), threshold: '95' })).toEqual({ threshold: 95 });
    expect(ruleChanges(above, { ...formOf(above), clearThreshold: 70, forReadings: '3' })).toEqual({
      clearThreshold: 70,
      forReadings: 3,
    });
  });

  it('leaves a field alone when its box is emptied or not a number', () => {
    expect(ruleChanges(above, { ...formOf(above), threshold: '' })).toEqual({});
    expect(ruleChanges(above, { ...formOf(above), threshold: 'abc' })).toEqual({});
  });

  it('edits a silence rule by its duration only', () => {
    const silence: RuleRow = { ...above, kind: 'SILENCE', threshold: null, clearThreshold: null, silenceSeconds: 300 };
    expect(ruleChanges(silence, { ...formOf(silence), silenceSeconds: 600, threshold: 5 })).toEqual({ silenceSeconds: 600 });
  });

  it('reads numbers as typed', () => {
    expect(numberOrNull(null)).toBeNull();
    expect(numberOrNull('')).toBeNull();
    expect(numberOrNull('2.5')).toBe(2.5);
    expect(numberOrNull(0)).toBe(0);
  });
});
