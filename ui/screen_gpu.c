/* screen_gpu — the System screen (F6): what this host's hardware is doing, so training can be
 * watched on a GPU machine and on a CPU-only one alike. Sampled once a second by a background
 * monitor (src/app/hwmon.h: /proc and NVML are never read on the UI thread, and history keeps
 * growing while the screen is hidden); graphs in braille or blocks (ui/plot.h).
 *
 *   - With GPUs: one line for CPU, memory and load, then one panel per GPU (name, utilisation,
 *     memory, temperature, power, the easel job holding it) with history graphs.
 *   - Without: CPU (total with history, and per core), memory (with history), load average,
 *     the easel jobs running on this host (this TUI's worker threads and `easel worker`s), and
 *     plainly why there is no GPU.
 * The first line (the screen's title) says which of these it shows.
 *
 * Jobs come from the store (running jobs whose host is this one; a GPU's job is the one whose
 * `gpus` list holds its index), so jobs of `easel worker` processes show as this TUI's own.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"
#include "hwmon.h"
#include "jobs.h"
#include "plot.h"
#include "screen.h"
#include "theme.h"
#include "store_jobs.h"

#define MAX_GPUS HWMON_MAX_GPUS
#define SAMPLE_S 1.0

typedef struct GpuPanel {
    GpuInfo info;
    int ok;                    /* the last sample succeeded */
    char error[ERR_MSG_LEN];
    double util[HWMON_HIST];  /* 0..1, oldest first */
    double mem[HWMON_HIST];
    int n_hist;
    char job[96];              /* "#12 import" or "" */
} GpuPanel;

#define MAX_HOST_JOBS 8

typedef struct HostJob {
    int64_t id;
    char kind[32];
    double done, total, rate;
    char unit[16];
    char where[48];            /* "this TUI, thread t0" / "worker pid 123" */
} HostJob;

typedef struct GpuScreen {
    App *app;
    HwCpuInfo cpu;
    double cpu_hist[HWMON_HIST];
    double mem_hist[HWMON_HIST];
    int n_cpu_hist;
    HostJob jobs[MAX_HOST_JOBS];
    int n_jobs;
    int more_jobs;             /* running on this host beyond MAX_HOST_JOBS */
    HwMonitor *mon;           /* samples in the background, also while hidden */
    atomic_int visible;        /* wake the UI after a sample only while shown */
    int n;
    GpuPanel *panels;          /* n of them */
} GpuScreen;

static const ScreenKey gpu_keys[] = {
    {"b", "graph glyphs: braille, blocks, ASCII in turn"},
    {NULL, NULL},
};

/* "this TUI, thread t0" or "worker pid N" for a job row of this host. */
static void job_where(const JobRow *r, char *buf, size_t n) {
    const char *thread = r->worker ? strrchr(r->worker, ':') : NULL;
    if (r->pid == (int64_t)getpid())
        snprintf(buf, n, "this TUI%s%s", thread ? ", thread " : "", thread ? thread + 1 : "");
    else
        snprintf(buf, n, "worker pid %lld", (long long)r->pid);
}

/* The running jobs of this host, and which holds GPU I, from the store. */
static void find_jobs(GpuScreen *s, Store *st) {
    for (int i = 0; i < s->n; i++)
        s->panels[i].job[0] = '\0';
    JobFilter f = {.states = 1u << JOB_STATE_RUNNING};
    JobRow *rows;
    int n;
    if (store_jobs_list(st, &f, &rows, &n, NULL))
        return;
    s->n_jobs = 0;
    s->more_jobs = 0;
    for (int j = n - 1; j >= 0; j--) { /* oldest first */
        if (!rows[j].host || strcmp(rows[j].host, jobs_host()) != 0)
            continue;
        if (s->n_jobs == MAX_HOST_JOBS) {
            s->more_jobs++;
            continue;
        }
        HostJob *h = &s->jobs[s->n_jobs++];
        h->id = rows[j].id;
        snprintf(h->kind, sizeof h->kind, "%s", rows[j].kind ? rows[j].kind : "?");
        h->done = rows[j].done;
        h->total = rows[j].total;
        h->rate = rows[j].rate;
        snprintf(h->unit, sizeof h->unit, "%s", rows[j].unit ? rows[j].unit : "");
        job_where(&rows[j], h->where, sizeof h->where);
    }
    for (int j = 0; j < n; j++) {
        if (!rows[j].gpus || !rows[j].host || strcmp(rows[j].host, jobs_host()) != 0)
            continue;
        const char *g = rows[j].gpus;
        while (*g) {
            char *end;
            long i = strtol(g, &end, 10);
            if (end == g)
                break;
            if (i >= 0 && i < s->n) {
                char *dst = s->panels[i].job;
                size_t len = strlen(dst);
                snprintf(dst + len, sizeof s->panels[i].job - len, "%s#%lld %s",
                         len ? ", " : "", (long long)rows[j].id, rows[j].kind);
            }
            g = *end == ',' ? end + 1 : end;
        }
    }
    store_job_rows_free(rows, n);
}

/* Copy the monitor's latest state into the panels (UI thread). */
static void pull(GpuScreen *s, App *app) {
    hwmon_cpu_snapshot(s->mon, &s->cpu, s->cpu_hist, s->mem_hist, HWMON_HIST, &s->n_cpu_hist);
    for (int i = 0; i < s->n; i++) {
        GpuPanel *p = &s->panels[i];
        Err err = {0};
        p->ok = hwmon_snapshot(s->mon, i, &p->info, p->util, p->mem, HWMON_HIST, &p->n_hist,
                                &err) == 0;
        if (!p->ok)
            snprintf(p->error, sizeof p->error, "%s", err.msg);
    }
    find_jobs(s, app_store(app));
}

static void on_sample(void *user_data) {
    GpuScreen *s = user_data;
    if (atomic_load(&s->visible))
        app_wake(s->app); /* sampler thread: only the wake byte */
}

static void *gpu_init(App *app, Err *err) {
    (void)err;
    GpuScreen *s = xcalloc(1, sizeof *s);
    s->app = app;
    atomic_init(&s->visible, 0);
    s->mon = hwmon_start(SAMPLE_S, on_sample, s);
    s->n = hwmon_count(s->mon);
    s->panels = xcalloc((size_t)(s->n ? s->n : 1), sizeof *s->panels);
    return s;
}

static void gpu_fini(void *p) {
    GpuScreen *s = p;
    hwmon_stop(s->mon);
    free(s->panels);
    free(s);
}

static void gpu_enter(void *p, App *app) {
    GpuScreen *s = p;
    atomic_store(&s->visible, 1);
    pull(s, app);
}

static void gpu_leave(void *p, App *app) {
    GpuScreen *s = p;
    (void)app;
    atomic_store(&s->visible, 0);
}

static int gpu_tick(void *p, App *app, double now) {
    GpuScreen *s = p;
    (void)now;
    pull(s, app);
    return SCREEN_TICK_CHANGED; /* live gauges and history */
}

static void draw_graph(GpuScreen *s, const double *hist, int n, UiRect r, const char *title,
                       attr_t a) {
    (void)s;
    ui_box(r, ui_attr(UI_C_DIM), title);
    int w = r.w - 2, h = r.h - 2;
    if (w < 1 || h < 1)
        return;
    char **rows = xcalloc((size_t)h, sizeof *rows);
    for (int i = 0; i < h; i++)
        rows[i] = xmalloc((size_t)plot_row_bytes(w));
    plot_area(hist, n, w, h, (PlotStyle)theme_plot(), rows);
    for (int i = 0; i < h; i++) {
        ui_put(r.y + 1 + i, r.x + 1, w, a, rows[i]);
        free(rows[i]);
    }
    free(rows);
}

static void draw_panel(GpuScreen *s, int i, UiRect r) {
    GpuPanel *p = &s->panels[i];
    GpuInfo *o = &p->info;
    char title[160];
    snprintf(title, sizeof title, "GPU %d  %s", i, p->ok ? o->name : "");
    ui_box(r, ui_attr(UI_C_ACCENT), title);
    int x = r.x + 2, w = r.w - 4, y = r.y + 1;
    if (!p->ok) {
        ui_put(y, x, w, ui_attr(UI_C_BAD), p->error[0] ? p->error : "not sampled yet");
        return;
    }
    char util[32] = "n/a", mem[64] = "n/a", temp[32] = "n/a", power[48] = "n/a";
    if (o->valid & GPU_HAS_UTIL)
        snprintf(util, sizeof util, "%u%% (mem %u%%)", o->util_gpu, o->util_mem);
    if (o->valid & GPU_HAS_MEM)
        snprintf(mem, sizeof mem, "%.1f / %.1f GiB", o->mem_used / 1073741824.0,
                 o->mem_total / 1073741824.0);
    if (o->valid & GPU_HAS_TEMP)
        snprintf(temp, sizeof temp, "%u C", o->temp_c);
    if (o->valid & GPU_HAS_POWER)
        snprintf(power, sizeof power, (o->valid & GPU_HAS_POWER_LIMIT) ? "%.0f / %.0f W" : "%.0f W",
                 o->power_w, o->power_limit_w);
    ui_putf(y++, x, w, ui_attr(UI_C_NORMAL), "util %-16s mem %-20s temp %-6s power %-14s "
            "procs %d", util, mem, temp, power, o->n_procs);
    ui_putf(y++, x, w, p->job[0] ? ui_attr(UI_C_GOOD) : ui_attr(UI_C_DIM), "job  %s",
            p->job[0] ? p->job : "none from easel on this host");
    if (o->n_procs > 0 && r.y + r.h - 1 - y >= 6) {
        char procs[512];
        size_t off = 0;
        for (int j = 0; j < o->n_procs && off < sizeof procs - 64; j++) {
            const GpuProcess *gp = &o->procs[j];
            char pm[24];
            if (gp->mem_used == UINT64_MAX)
                snprintf(pm, sizeof pm, "n/a");
            else
                snprintf(pm, sizeof pm, "%.0f MiB", gp->mem_used / 1048576.0);
            off += (size_t)snprintf(procs + off, sizeof procs - off, "%s%u %s %s",
                                    j ? ",  " : "", gp->pid, gp->name[0] ? gp->name : "?", pm);
        }
        ui_putf(y++, x, w, ui_attr(UI_C_DIM), "proc %s", procs);
    }
    int gh = r.y + r.h - 1 - y;
    if (gh < 3)
        return;
    int gw = (r.w - 2) / 2;
    draw_graph(s, p->util, p->n_hist, (UiRect){y, r.x + 1, gh, gw}, "utilisation",
               ui_attr(UI_C_GOOD));
    draw_graph(s, p->mem, p->n_hist, (UiRect){y, r.x + 1 + gw, gh, r.w - 2 - gw}, "memory",
               ui_attr(UI_C_ACCENT));
}

static double pct(double f) { return isfinite(f) ? f * 100.0 : 0.0; }

#define GIB(b) ((double)(b) / 1073741824.0)

/* "CPU 45% of 16 cores  memory 12.3 / 125.8 GiB (10%)  load 1.20 0.98 0.50" */
static void fmt_host_line(const GpuScreen *s, char *buf, size_t n) {
    const HwCpuInfo *c = &s->cpu;
    size_t o = 0;
    if (c->ok)
        o += (size_t)snprintf(buf + o, n - o, "CPU %.0f%% of %d core%s", pct(c->total),
                              c->n_cpus, c->n_cpus == 1 ? "" : "s");
    else
        o += (size_t)snprintf(buf + o, n - o, "CPU: sampling%s",
                              c->n_cpus ? "" : " (no /proc/stat here)");
    if (c->mem_ok && o < n)
        o += (size_t)snprintf(buf + o, n - o, "   memory %.1f / %.1f GiB in use (%.0f%%)",
                              GIB(c->mem_total - c->mem_available), GIB(c->mem_total),
                              100.0 * (double)(c->mem_total - c->mem_available) /
                                  (double)(c->mem_total ? c->mem_total : 1));
    if (c->load_ok && o < n)
        snprintf(buf + o, n - o, "   load %.2f %.2f %.2f", c->load[0], c->load[1], c->load[2]);
}

/* Per-core bars in columns: "  3 ▕█████   ▏ 61%". */
static void draw_cores(const GpuScreen *s, UiRect r) {
    const int cw = 18;
    int cols = r.w / cw, rows = r.h;
    if (cols < 1 || rows < 1)
        return;
    int fit = cols * rows, n = s->cpu.n_cpus;
    for (int i = 0; i < n && i < fit; i++) {
        int y = r.y + i % rows, x = r.x + (i / rows) * cw;
        if (i == fit - 1 && n > fit) {
            ui_putf(y, x, cw, ui_attr(UI_C_DIM), "+%d more", n - fit + 1);
            break;
        }
        double f = s->cpu.core[i];
        char bar[8 * 4 + 1];
        int units = isfinite(f) ? (int)(f * 8 + 0.5) : 0;
        size_t o = 0;
        for (int k = 0; k < 8; k++)
            o += (size_t)snprintf(bar + o, sizeof bar - o, "%s", k < units ? "\xe2\x96\x88" : " ");
        ui_putf(y, x, 4, ui_attr(UI_C_DIM), "%3d", i);
        ui_put(y, x + 4, 8, f >= 0.9 ? ui_attr(UI_C_WARN) : ui_attr(UI_C_GOOD), bar);
        ui_putf(y, x + 12, 6, A_NORMAL, " %3.0f%%", pct(f));
    }
}

static void draw_jobs(const GpuScreen *s, UiRect r) {
    ui_box(r, ui_attr(UI_C_ACCENT), "easel jobs running on this host");
    int x = r.x + 2, w = r.w - 4, y = r.y + 1;
    if (s->n_jobs == 0) {
        ui_put(y, x, w, ui_attr(UI_C_DIM),
               "none (queue one on the Jobs screen, F4; this TUI's workers run it)");
        return;
    }
    for (int i = 0; i < s->n_jobs && y < r.y + r.h - 1; i++) {
        const HostJob *j = &s->jobs[i];
        char prog[32] = "", rate[40] = "";
        if (j->total > 0)
            snprintf(prog, sizeof prog, "%5.1f%%", 100.0 * j->done / j->total);
        if (j->rate > 0)
            snprintf(rate, sizeof rate, "%.3g %s/s", j->rate, j->unit[0] ? j->unit : "units");
        ui_putf(y++, x, w, A_NORMAL, "#%-4lld %-14s %-7s %-18s %s", (long long)j->id, j->kind,
                prog, rate, j->where);
    }
    if (s->more_jobs && y < r.y + r.h - 1)
        ui_putf(y, x, w, ui_attr(UI_C_DIM), "and %d more (Jobs screen, F4)", s->more_jobs);
}

/* No GPU: CPU, memory, load, jobs, and why there is no GPU. */
static void draw_host(GpuScreen *s, UiRect r) {
    int reason_h = 3;
    int jobs_h = 2 + (s->n_jobs ? s->n_jobs + (s->more_jobs > 0) : 1);
    int rest = r.h - reason_h - jobs_h;
    if (rest < 8) { /* small terminal: the graphs give way */
        rest = 8;
        jobs_h = r.h - reason_h - rest > 3 ? r.h - reason_h - rest : 3;
    }
    int cpu_h = rest * 3 / 5, mem_h = rest - cpu_h;
    int y = r.y;
    const HwCpuInfo *c = &s->cpu;
    /* CPU: total history left, per core right */
    char title[96];
    if (c->ok)
        snprintf(title, sizeof title, "CPU  %.0f%% of %d core%s", pct(c->total), c->n_cpus,
                 c->n_cpus == 1 ? "" : "s");
    else
        snprintf(title, sizeof title, "CPU  (first sample in a second)");
    UiRect box = {y, r.x, cpu_h, r.w};
    ui_box(box, ui_attr(UI_C_ACCENT), title);
    if (c->load_ok)
        ui_putf(y + 1, r.x + 2, r.w - 4, A_NORMAL, "load average %.2f %.2f %.2f (1, 5, 15 min)"
                "   %d running of %d tasks", c->load[0], c->load[1], c->load[2],
                c->procs_running, c->procs_total);
    int gh = cpu_h - 3, gw = (r.w - 2) / 2;
    if (gh >= 3) {
        draw_graph(s, s->cpu_hist, s->n_cpu_hist, (UiRect){y + 2, r.x + 1, gh, gw},
                   "all cores", ui_attr(UI_C_GOOD));
        draw_cores(s, (UiRect){y + 2, r.x + 2 + gw, gh, r.w - 4 - gw});
    }
    y += cpu_h;
    /* memory */
    if (c->mem_ok)
        snprintf(title, sizeof title, "Memory  %.1f / %.1f GiB in use", GIB(c->mem_total -
                 c->mem_available), GIB(c->mem_total));
    else
        snprintf(title, sizeof title, "Memory");
    ui_box((UiRect){y, r.x, mem_h, r.w}, ui_attr(UI_C_ACCENT), title);
    if (c->mem_ok)
        ui_putf(y + 1, r.x + 2, r.w - 4, A_NORMAL, "available %.1f GiB   swap %.1f / %.1f GiB "
                "in use", GIB(c->mem_available), GIB(c->swap_total - c->swap_free),
                GIB(c->swap_total));
    if (mem_h - 3 >= 3)
        draw_graph(s, s->mem_hist, s->n_cpu_hist, (UiRect){y + 2, r.x + 1, mem_h - 3, r.w - 2},
                   "memory in use", ui_attr(UI_C_ACCENT));
    y += mem_h;
    draw_jobs(s, (UiRect){y, r.x, jobs_h, r.w});
    y += jobs_h;
    /* why there is no GPU: one line of reason (cut), one of consequence */
    const char *why = hwmon_reason(s->mon);
    if (strncmp(why, "no GPU: ", 8) == 0) /* the reason starts so for 'easel gpus'; say it once */
        why += 8;
    ui_putf(y, r.x + 1, r.w - 2, ui_attr(UI_C_WARN) | A_BOLD, "No GPU. %s", why);
    ui_put(y + 1, r.x + 1, r.w - 2, ui_attr(UI_C_DIM),
           "Every job runs on the CPU. 'easel gpus' prints the same discovery.");
}

static void gpu_draw(void *p, App *app, UiRect r) {
    GpuScreen *s = p;
    (void)app;
    char host[256];
    fmt_host_line(s, host, sizeof host);
    if (s->n == 0) {
        ui_putf(r.y, r.x, r.w, ui_attr(UI_C_ACCENT) | A_BOLD, "System: CPU, memory, load "
                "and the jobs of this host (no GPU)   sampled every %.0f s", SAMPLE_S);
        draw_host(s, (UiRect){r.y + 1, r.x, r.h - 1, r.w});
        return;
    }
    ui_putf(r.y, r.x, r.w, ui_attr(UI_C_ACCENT) | A_BOLD, "System: %d GPU%s, CPU, memory and "
            "load   driver %s  NVML %s   sampled every %.0f s", s->n, s->n == 1 ? "" : "s",
            hwmon_driver_version(s->mon), hwmon_nvml_version(s->mon), SAMPLE_S);
    ui_put(r.y + 1, r.x, r.w, A_NORMAL, host);
    int avail = r.h - 2;
    int ph = avail / s->n;
    if (ph < 4)
        ph = 4;
    for (int i = 0; i < s->n && r.y + 2 + i * ph + 3 < r.y + r.h; i++) {
        int h = ph;
        if (r.y + 2 + i * ph + h > r.y + r.h)
            h = r.y + r.h - (r.y + 2 + i * ph);
        draw_panel(s, i, (UiRect){r.y + 2 + i * ph, r.x, h, r.w});
    }
}

static int gpu_key(void *p, App *app, int ch) {
    (void)p;
    if (ch == 'b') {
        theme_plot_set(theme_plot_next(theme_plot()));
        app_status(app, "graphs in %s", theme_plot_name(theme_plot()));
        return SCREEN_KEY_HANDLED;
    }
    return SCREEN_KEY_IGNORED;
}

const ScreenClass screen_gpu = {
    .name = "System",
    .fkey = 6,
    .keys = gpu_keys,
    .init = gpu_init,
    .fini = gpu_fini,
    .enter = gpu_enter,
    .leave = gpu_leave,
    .draw = gpu_draw,
    .key = gpu_key,
    .tick = gpu_tick,
};
