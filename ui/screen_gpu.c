/* screen_gpu — the GPU screen: one panel per GPU (name, utilisation, memory, temperature,
 * power, the easel job holding it) with utilisation and memory history graphs in braille
 * (ui/plot.h), sampled once a second by a background monitor (src/hwmon.h: NVML is never
 * called on the UI thread, and history keeps growing while the screen is hidden).
 * Without NVML or a GPU it says so plainly: everything runs on the CPU.
 *
 * The job holding a GPU comes from the store (running jobs on this host whose `gpus` list
 * the index), so jobs of `easel worker` processes show as well as this TUI's own.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct GpuScreen {
    App *app;
    HwMonitor *mon;           /* samples in the background, also while hidden */
    atomic_int visible;        /* wake the UI after a sample only while shown */
    int n;
    GpuPanel *panels;          /* n of them */
} GpuScreen;

static const ScreenKey gpu_keys[] = {
    {"b", "graph glyphs: braille, blocks, ASCII in turn"},
    {NULL, NULL},
};

/* Which running job on this host holds GPU I, from the store. */
static void find_jobs(GpuScreen *s, Store *st) {
    for (int i = 0; i < s->n; i++)
        s->panels[i].job[0] = '\0';
    JobFilter f = {.states = 1u << JOB_STATE_RUNNING};
    JobRow *rows;
    int n;
    if (store_jobs_list(st, &f, &rows, &n, NULL))
        return;
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
    if (s->n)
        pull(s, app);
}

static void gpu_leave(void *p, App *app) {
    GpuScreen *s = p;
    (void)app;
    atomic_store(&s->visible, 0);
}

static void gpu_tick(void *p, App *app, double now) {
    GpuScreen *s = p;
    (void)now;
    if (s->n) {
        pull(s, app);
        app_dirty(app);
    }
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

static void gpu_draw(void *p, App *app, UiRect r) {
    GpuScreen *s = p;
    (void)app;
    if (s->n == 0) {
        UiRect box = {r.y + 1, r.x + 2, 10, r.w - 4};
        int w = box.w - 4, y = box.y + 2;
        ui_box(box, ui_attr(UI_C_WARN), "GPU");
        ui_put(y++, box.x + 2, w, ui_attr(UI_C_WARN) | A_BOLD, "No GPU.");
        /* the reason, wrapped at spaces */
        const char *t = hwmon_reason(s->mon);
        while (*t && y < box.y + box.h - 2 && w > 10) {
            int n = (int)strlen(t);
            if (n > w) {
                n = w;
                while (n > w / 2 && t[n] != ' ')
                    n--;
            }
            ui_putf(y++, box.x + 2, w, ui_attr(UI_C_NORMAL), "%.*s", n, t);
            t += n;
            while (*t == ' ')
                t++;
        }
        ui_put(y, box.x + 2, w, ui_attr(UI_C_DIM),
               "Every job runs on the CPU. 'easel gpus' prints the same discovery.");
        return;
    }
    ui_putf(r.y, r.x, r.w, ui_attr(UI_C_DIM), "driver %s  NVML %s  %d GPU%s  (sampled every "
            "%.0f s)", hwmon_driver_version(s->mon), hwmon_nvml_version(s->mon), s->n,
            s->n == 1 ? "" : "s", SAMPLE_S);
    int avail = r.h - 1;
    int ph = avail / s->n;
    if (ph < 4)
        ph = 4;
    for (int i = 0; i < s->n && r.y + 1 + i * ph + 3 < r.y + r.h; i++) {
        int h = ph;
        if (r.y + 1 + i * ph + h > r.y + r.h)
            h = r.y + r.h - (r.y + 1 + i * ph);
        draw_panel(s, i, (UiRect){r.y + 1 + i * ph, r.x, h, r.w});
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
    .name = "GPU",
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
