import { Channel, channelChanges } from './channels';

const hook: Channel = {
  id: '1',
  name: 'on-call',
  kind: 'WEBHOOK',
  url: 'https://hooks.example.com/a',
  hasSecret: true,
  enabled: true,
  version: 3,
};

describe('channelChanges', () => {
  it('sends nothing when nothing changed, and keeps the secret when its box is empty', () => {
    expect(channelChanges(hook, { name: ' on-call ', url: 'https://hooks.example.com/a', secret: '' })).toBeNull();
  });

  it('sends only the changed fields', () => {
    expect(channelChanges(hook, { name: 'pager', url: 'https://hooks.example.com/a', secret: '' })).toEqual({ name: 'pager' });
    expect(channelChanges(hook, { name: 'on-call', url: 'https://hooks.example.com/b ', secret: 'new' })).toEqual({
      url: 'https://hooks.example.com/b',
      secret: 'new',
    });
  });

  it('never sends a URL or secret for an in-app channel', () => {
    const inApp: Channel = { ...hook, kind: 'IN_APP', url: null, hasSecret: false };
    expect(channelChanges(inApp, { name: 'on-call', url: 'https://x.example', secret: 's' })).toBeNull();
  });
});
