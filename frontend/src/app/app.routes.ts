import { Routes } from '@angular/router';
import { signedIn } from './core/auth';

export const routes: Routes = [
  { path: 'login', loadComponent: () => import('./pages/login').then((m) => m.LoginPage), title: 'Sign in · Steadfast' },
  {
    path: '',
    canActivate: [signedIn],
    children: [
      { path: '', loadComponent: () => import('./pages/overview').then((m) => m.OverviewPage), title: 'Overview · Steadfast' },
      // The source documents' name for the overview.
      { path: 'dashboard', pathMatch: 'full', redirectTo: '' },
      { path: 'submit', loadComponent: () => import('./pages/submit').then((m) => m.SubmitPage), title: 'Submit · Steadfast' },
      { path: 'jobs', loadComponent: () => import('./pages/jobs').then((m) => m.JobsPage), title: 'Jobs · Steadfast' },
      { path: 'jobs/:id', loadComponent: () => import('./pages/job').then((m) => m.JobPage), title: 'Job · Steadfast' },
      { path: 'runs', loadComponent: () => import('./pages/runs').then((m) => m.RunsPage), title: 'Runs · Steadfast' },
      { path: 'runs/:id', loadComponent: () => import('./pages/run').then((m) => m.RunPage), title: 'Run · Steadfast' },
      { path: 'schedules', loadComponent: () => import('./pages/schedules').then((m) => m.SchedulesPage), title: 'Schedules · Steadfast' },
      { path: 'dead', loadComponent: () => import('./pages/dead').then((m) => m.DeadPage), title: 'Dead jobs · Steadfast' },
      { path: 'sensors', loadComponent: () => import('./pages/sensors').then((m) => m.SensorsPage), title: 'Sensors · Steadfast' },
      { path: 'sensors/:key', loadComponent: () => import('./pages/sensor').then((m) => m.SensorPage), title: 'Sensor · Steadfast' },
      { path: 'channels', loadComponent: () => import('./pages/channels').then((m) => m.ChannelsPage), title: 'Channels · Steadfast' },
      { path: 'devices', loadComponent: () => import('./pages/devices').then((m) => m.DevicesPage), title: 'Devices · Steadfast' },
      { path: 'users', loadComponent: () => import('./pages/users').then((m) => m.UsersPage), title: 'Users · Steadfast' },
      { path: 'alerts', loadComponent: () => import('./pages/alerts').then((m) => m.AlertsPage), title: 'Alerts · Steadfast' },
      { path: '**', loadComponent: () => import('./pages/not-found').then((m) => m.NotFoundPage), title: 'Not found · Steadfast' },
    ],
  },
];
