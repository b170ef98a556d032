import { TestBed } from '@angular/core/testing';
import { storeSession } from '../../testing/fake-server';
import { Session, STORAGE_KEY } from './session';

describe('Session', () => {
  beforeEach(() => localStorage.clear());

  it('survives a reload: a new instance reads the stored user', () => {
    storeSession('OPERATOR');
    const session = TestBed.inject(Session);
    expect(session.signedIn()).toBe(true);
    expect(session.can('OPERATOR')).toBe(true);
    expect(session.can('ADMIN')).toBe(false);
  });

  it('follows a sign-out in another tab', () => {
    storeSession('ADMIN');
    const session = TestBed.inject(Session);
    localStorage.removeItem(STORAGE_KEY);
    window.dispatchEvent(new StorageEvent('storage', { key: STORAGE_KEY }));
    expect(session.signedIn()).toBe(false);
  });

  it('ignores a stored value that is not a session', () => {
    localStorage.setItem(STORAGE_KEY, '{"refreshToken": 5}');
    expect(TestBed.inject(Session).stored()).toBeNull();
    localStorage.setItem(STORAGE_KEY, 'not json');
    expect(TestBed.inject(Session).stored()).toBeNull();
  });
});
