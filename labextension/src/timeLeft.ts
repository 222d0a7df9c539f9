/*
 * Plugin "rcsc3-jupyterlab:time-left": the student sees how long their Slurm job has left.
 *
 * - The status bar shows "1 h 12 min left" (tooltip: the end time, the job, its node), from the
 *   server's rcsc3/api/job (rcsc3_proxy/server/job_api.py), which tells Slurm's real EndTime: an
 *   admin's extension or shortening of the job shows within a minute.
 * - At 10 and 2 minutes before the end a JupyterLab notification says so (the server writes the
 *   same warnings to the job log). A page opened later than a warning's time shows the one due.
 *
 * The API is asked every POLL_MS (the server caches Slurm's answer ~30 s); the text is redrawn
 * every TICK_MS from the last answer and the browser's monotonic clock, so a wrong clock on the
 * student's computer does not matter. Requests go through JupyterLab's ServerConnection, which
 * sends the XSRF header JupyterHub requires of cookie-authenticated API requests. Outside a Slurm
 * job (the API answers 404) the item stays hidden and polling stops.
 *
 * For tests and curious admins the item's node carries data-seconds-left and data-end-time.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

const NAME = 'rcsc3-jupyterlab';
const ROUTE = 'rcsc3/api/job';
const POLL_MS = 30_000;
const TICK_MS = 15_000;
/** seconds before the end at which a notification shows (as the server's job-log warnings) */
const WARN_AT = [600, 120];

/** What rcsc3/api/job answers. */
interface IJob {
  job_id: string;
  partition: string;
  nodes: string[];
  end_time: string | null;
  seconds_left: number | null;
  state: string;
  checked_at: string | null;
  stale: boolean;
  error?: string;
}

/** Whole minutes to the nearest (as the job log's warnings count them), so both say the same. */
function nearestMinutes(seconds: number): number {
  return Math.floor(seconds / 60 + 0.5);
}

/** "1 h 12 min left", "12 min left", "< 1 min left", "ending now". */
export function describeTimeLeft(seconds: number): string {
  if (seconds <= 0) {
    return 'ending now';
  }
  const minutes = nearestMinutes(seconds);
  if (minutes < 1) {
    return '< 1 min left';
  }
  const hours = Math.floor(minutes / 60);
  return hours ? `${hours} h ${minutes % 60} min left` : `${minutes} min left`;
}

function minutesPhrase(seconds: number): string {
  const minutes = Math.max(1, nearestMinutes(seconds));
  return minutes === 1 ? '1 minute' : `${minutes} minutes`;
}

function clockTime(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/**
 * The threshold to warn about now, or null; updates `warned`. Only the smallest threshold passed
 * is announced; a job extended above a threshold is warned again when it comes near it.
 */
function dueWarning(secondsLeft: number, warned: Set<number>): number | null {
  for (const t of [...warned]) {
    if (secondsLeft > t) {
      warned.delete(t);
    }
  }
  const passed = WARN_AT.filter(t => secondsLeft <= t);
  if (!passed.length) {
    return null;
  }
  const smallest = Math.min(...passed);
  const fresh = !warned.has(smallest);
  passed.forEach(t => warned.add(t));
  return fresh ? smallest : null;
}

class TimeLeft extends Widget {
  private job: IJob | null = null;
  private answeredAt = 0; // performance.now() of the last answer
  private failed = ''; // why the last request failed ('' when it did not)
  private warned = new Set<number>();
  private notice = '';
  private pollTimer = 0;
  private tickTimer = 0;

  constructor(private readonly settings: ServerConnection.ISettings) {
    super();
    this.addClass('rcsc3-TimeLeft');
    this.addClass('jp-StatusBar-TextItem');
    this.hide();
  }

  start(): void {
    void this.poll();
    this.tickTimer = window.setInterval(() => this.render(), TICK_MS);
  }

  dispose(): void {
    window.clearTimeout(this.pollTimer);
    window.clearInterval(this.tickTimer);
    super.dispose();
  }

  /** Seconds left now, from the last answer and the time since it. */
  secondsLeft(): number | null {
    if (!this.job || this.job.seconds_left === null) {
      return null;
    }
    return Math.max(0, this.job.seconds_left - (performance.now() - this.answeredAt) / 1000);
  }

  private async poll(): Promise<void> {
    let again = true;
    try {
      const url = URLExt.join(this.settings.baseUrl, ROUTE);
      const response = await ServerConnection.makeRequest(url, { cache: 'no-store' }, this.settings);
      if (response.status === 404) {
        again = false; // not a Slurm job: nothing to show, nothing will change
        this.job = null;
      } else if (response.ok) {
        this.job = (await response.json()) as IJob;
        this.answeredAt = performance.now();
        this.failed = '';
      } else {
        this.failed = `the server answered ${response.status}`;
      }
    } catch (error) {
      this.failed = `${error}`;
    }
    this.render();
    if (again && !this.isDisposed) {
      this.pollTimer = window.setTimeout(() => void this.poll(), POLL_MS);
    }
  }

  private render(): void {
    const job = this.job;
    const left = this.secondsLeft();
    if (!job || left === null || !job.end_time) {
      this.hide();
      delete this.node.dataset.secondsLeft;
      return;
    }
    const unsure = job.stale || this.failed !== '';
    this.node.textContent = describeTimeLeft(left) + (unsure ? ' (?)' : '');
    this.node.dataset.secondsLeft = String(Math.round(left));
    this.node.dataset.endTime = job.end_time;
    const where = job.nodes.length ? ` on ${job.nodes.join(', ')}` : '';
    let title = `This session (Slurm job ${job.job_id}${where}, partition ${job.partition}) ends at ${clockTime(job.end_time)}.`;
    if (job.stale && job.checked_at) {
      title += ` Slurm has not answered since ${clockTime(job.checked_at)}: this is the last known end.`;
    } else if (this.failed) {
      title += ` The server did not answer (${this.failed}): this is the last known end.`;
    }
    this.node.title = title;
    this.show();
    this.warn(left, job.end_time);
  }

  private warn(left: number, endTime: string): void {
    if (dueWarning(left, this.warned) === null) {
      return;
    }
    if (this.notice) {
      Notification.dismiss(this.notice);
    }
    this.notice = Notification.warning(
      `This session ends at ${clockTime(endTime)} (${minutesPhrase(left)} left): save your work.`,
      { autoClose: false }
    );
    document.body.dataset.rcsc3TimeWarning = String(Math.round(left));
  }
}

export const timeLeft: JupyterFrontEndPlugin<void> = {
  id: `${NAME}:time-left`,
  description: "Shows the Slurm job's time left in the status bar, and warns 10 and 2 minutes before its end.",
  autoStart: true,
  optional: [IStatusBar],
  activate: (app: JupyterFrontEnd, statusBar: IStatusBar | null): void => {
    const item = new TimeLeft(app.serviceManager.serverSettings);
    if (statusBar) {
      statusBar.registerStatusItem(`${NAME}:time-left`, { item, align: 'left', rank: 1000 });
    }
    // after the layout is restored: nothing added to the page's start, no toast under the splash screen;
    // without a status bar (another JupyterLab shell) the warnings still come
    void app.restored.then(() => item.start());
  }
};
