import { ROLES, deviceChanges, roleSummary, sensorChanges, sensorKeys } from './access';

describe('access', () => {
  it('reads sensor keys separated by commas or spaces, once each', () => {
    expect(sensorKeys('boiler-1, boiler-2 boiler-1,,  tank')).toEqual(['boiler-1', 'boiler-2', 'tank']);
    expect(sensorKeys('   ')).toEqual([]);
  });

  it('says what each role may do', () => {
    for (const role of ROLES) expect(roleSummary(role).length).toBeGreaterThan(5);
    expect(roleSummary('OPERATOR')).toContain('pauses queues');
  });

  it('sends only what an edit of a device changes', () => {
    const device = { name: 'gateway', sensorKeys: ['a', 'b'] };
    expect(deviceChanges(device, ' gateway ', 'b, a')).toBeNull();
    expect(deviceChanges(device, 'gate 2', 'a b')).toEqual({ name: 'gate 2' });
    expect(deviceChanges(device, 'gateway', 'a, c')).toEqual({ sensorKeys: ['a', 'c'] });
    expect(deviceChanges(device, 'gateway', '')).toEqual({ sensorKeys: [] });
  });

  it('sends only what a rename of a sensor changes', () => {
    const sensor = { name: 'Boiler', unit: 'C' };
    expect(sensorChanges(sensor, { name: ' Boiler ', unit: 'C' })).toBeNull();
    expect(sensorChanges(sensor, { name: 'Boiler 2', unit: 'C' })).toEqual({ name: 'Boiler 2' });
    expect(sensorChanges(sensor, { name: 'Boiler', unit: ' K' })).toEqual({ unit: 'K' });
  });
});
