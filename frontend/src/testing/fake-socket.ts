interface Message {
  type: string;
  id?: string;
  payload?: { query?: string; variables?: Record<string, unknown>; authorization?: string } & Record<string, unknown>;
}

/**
 * The server side of graphql-transport-ws, in memory, for unit tests of the subscription
 * logic (the end-to-end suite runs it against the real server).
 */
export class FakeSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  static readonly sockets: FakeSocket[] = [];

  readyState = FakeSocket.CONNECTING;
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  init: Message['payload'] | null = null;
  readonly subscriptions: { id: string; variables: Record<string, unknown> }[] = [];

  constructor(readonly url: string, readonly protocol: string) {
    FakeSocket.sockets.push(this);
    setTimeout(() => {
      this.readyState = FakeSocket.OPEN;
      this.onopen?.();
    });
  }

  static latest(): FakeSocket {
    const socket = FakeSocket.sockets[FakeSocket.sockets.length - 1];
    if (!socket) throw new Error('no socket was opened');
    return socket;
  }

  send(raw: string): void {
    const message = JSON.parse(raw) as Message;
    if (message.type === 'connection_init') {
      this.init = message.payload ?? null;
      setTimeout(() => this.deliver({ type: 'connection_ack' }));
    } else if (message.type === 'subscribe' && message.id) {
      this.subscriptions.push({ id: message.id, variables: message.payload?.variables ?? {} });
    }
  }

  /** Sends a `next` to the newest subscription. */
  next(data: unknown): void {
    this.deliver({ type: 'next', id: this.lastId(), payload: { data } as Message['payload'] });
  }

  nextError(code: string): void {
    this.deliver({ type: 'next', id: this.lastId(), payload: { errors: [{ message: code, extensions: { code } }] } as Message['payload'] });
  }

  /** The server closes the connection. */
  drop(code: number): void {
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.({ code, reason: '', wasClean: code !== 1006 });
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState === FakeSocket.CLOSED) return;
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.({ code, reason, wasClean: true });
  }

  private lastId(): string {
    const last = this.subscriptions[this.subscriptions.length - 1];
    if (!last) throw new Error('nothing subscribed');
    return last.id;
  }

  private deliver(message: Message): void {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
}
