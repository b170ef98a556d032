import { ROLES, roleSummary, sensorKeys } from './access';

describe('access', () => {
  it('reads sensor keys separated by commas or spaces, once each', () => {
    expect(sensorKeys('boiler-1, boiler-2 boiler-1,,  tank')).toEqual(['boiler-1', 'boiler-2', 'tank']);
    expect(sensorKeys('   ')).toEqual([]);
  });

  it('says what each role may do', () => {
    for (const role of ROLES) expect(roleSummary(role).length).toBeGreaterThan(5);
    expect(roleSummary('OPERATOR')).toContain('pauses queues');
  });
});
