/** A channel as the channels page shows it. */
export interface Channel {
  id: string;
  name: string;
  kind: 'WEBHOOK' | 'IN_APP' | null;
  url: string | null;
  hasSecret: boolean;
  enabled: boolean;
  version: number;
}

export interface ChannelForm {
  name: string;
  url: string;
  /** Empty keeps the current secret; anything else replaces it. */
  secret: string;
}

/**
 * The `UpdateChannelInput` for an edit: only the fields that changed, or null when nothing
 * did. A URL or secret is only sent for a webhook, and an empty secret keeps the old one.
 */
export function channelChanges(channel: Channel, form: ChannelForm): { name?: string; url?: string; secret?: string } | null {
  const changes: { name?: string; url?: string; secret?: string } = {};
  const name = form.name.trim();
  if (name !== channel.name) changes.name = name;
  if (channel.kind === 'WEBHOOK') {
    const url = form.url.trim();
    if (url !== (channel.url ?? '')) changes.url = url;
    if (form.secret.length > 0) changes.secret = form.secret;
  }
  return Object.keys(changes).length > 0 ? changes : null;
}
