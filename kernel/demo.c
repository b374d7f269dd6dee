/*
 * demo -- the synthetic data generator behind `crmd demo` (demo.h).
 *
 * The model, per contact (all draws from a generator seeded by the run's
 * seed and the contact's number, so a contact's history does not depend on
 * the others and a counting pre-pass sees exactly what the writing pass
 * writes):
 *   - acquired at a time spread over the history (more of them lately);
 *   - 80 % become customers: purchases a Poisson process whose rate is
 *     Gamma distributed across customers, each purchase followed by a
 *     dropout with a Beta distributed probability (BG/NBD-like: some churn
 *     early, some keep buying to the end);
 *   - order amounts log-normal around a customer's own mean (itself
 *     log-normal; B2B customers spend more); a few cancelled or refunded,
 *     the last days' orders still pending/paid/shipped;
 *   - interactions of every kind at a customer-specific rate while active;
 *   - tickets about some orders plus general questions, created in state
 *     `new`, then moved through the workflow (assigned, in_progress,
 *     resolved, closed, some reopened) as far as their age says.
 */
#include "demo.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "codec.h"
#include "datalock.h"
#include "lua_host.h"
#include "plugin.h"
#include "progress.h"
#include "schema.h"
#include "store.h"

#define DAY ((int64_t)86400000)
#define BATCH 64
#define MAX_UNITS (BATCH * 9)
#define LAG_MAX 4096            /* feed entries the after-hooks may trail by */
#define DRAIN_WAIT_MS 10000     /* drain waits for work due within this */
#define MAX_ORDERS 400
#define MAX_INTER 200
#define MAX_TICKETS 40
#define MAX_DEALS 4
#define MAX_SURVEYS 3
#define MAX_CAMPAIGNS 120       /* one a month */
#define NAGENTS 12

/* ---- random numbers: xoshiro256** seeded by splitmix64 ---------------- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed * 0xd1342543de82ef95ULL + stream * 0x9e3779b97f4a7c15ULL + 1;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next64(rng *r)
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* (0, 1) */
static double u01(rng *r) { return ((double)(next64(r) >> 11) + 0.5) / 9007199254740992.0; }
static int below(rng *r, int n) { return (int)(u01(r) * n); }
static int chance(rng *r, double p) { return u01(r) < p; }
static double rexp(rng *r, double mean) { return -log(u01(r)) * mean; }
static double rnorm(rng *r) { return sqrt(-2.0 * log(u01(r))) * cos(6.283185307179586 * u01(r)); }
static double rlognorm(rng *r, double mu, double sigma) { return exp(mu + sigma * rnorm(r)); }

/* Gamma(shape k, scale 1), Marsaglia and Tsang. */
static double rgamma1(rng *r, double k)
{
    if (k < 1.0)
        return rgamma1(r, k + 1.0) * pow(u01(r), 1.0 / k);
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rnorm(r), v = 1.0 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = u01(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v;
    }
}

static double rbeta(rng *r, double a, double b)
{
    double x = rgamma1(r, a), y = rgamma1(r, b);
    return x / (x + y);
}

/* Index drawn with the given weights. */
static int pick_w(rng *r, const int *w, int n)
{
    int sum = 0, x;
    for (int i = 0; i < n; i++)
        sum += w[i];
    x = below(r, sum);
    for (int i = 0; i < n; i++) {
        if (x < w[i])
            return i;
        x -= w[i];
    }
    return n - 1;
}

/* ---- built-in lists ----------------------------------------------------- */

static const char *FIRST[] = {
    "Anna", "Lukas", "Marie", "Jonas", "Sophie", "Leon", "Emma", "Paul", "Mia", "Felix",
    "Laura", "Maximilian", "Julia", "Elias", "Clara", "Noah", "Léa", "Hugo", "Chloé", "Louis",
    "Giulia", "Marco", "Sofia", "Luca", "Lucía", "Pablo", "Carmen", "Javier", "Emily", "Oliver",
    "Olivia", "Harry", "Amelia", "George", "Sanne", "Daan", "Eva", "Lars", "Nina", "Jan",
    "Chloe", "James", "Ava", "Ethan", "Lena", "Tobias", "Zoé", "Mateo"};
static const char *LAST[] = {
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann",
    "Schulz", "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Rossi", "Russo",
    "Ferrari", "Esposito", "Bianchi", "García", "Fernández", "González", "Rodríguez", "López",
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "de Jong", "Jansen", "de Vries",
    "van Dijk", "Gruber", "Huber", "Bauer", "Keller", "Johnson", "Miller", "Davis", "Moore"};
typedef struct city {
    const char *name, *country, *region, *postcode, *lang;
    int weight;
} city;
static const city CITIES[] = {
    {"Berlin", "DE", "DACH", "10115", "de", 9}, {"Hamburg", "DE", "DACH", "20095", "de", 6},
    {"München", "DE", "DACH", "80331", "de", 6}, {"Köln", "DE", "DACH", "50667", "de", 4},
    {"Frankfurt am Main", "DE", "DACH", "60311", "de", 4}, {"Leipzig", "DE", "DACH", "04109", "de", 2},
    {"Wien", "AT", "DACH", "1010", "de", 4}, {"Graz", "AT", "DACH", "8010", "de", 1},
    {"Zürich", "CH", "DACH", "8001", "de", 3}, {"Genève", "CH", "DACH", "1201", "fr", 1},
    {"Paris", "FR", "West", "75001", "fr", 7}, {"Lyon", "FR", "West", "69001", "fr", 3},
    {"Marseille", "FR", "West", "13001", "fr", 2}, {"Amsterdam", "NL", "Benelux", "1011", "nl", 4},
    {"Rotterdam", "NL", "Benelux", "3011", "nl", 2}, {"Bruxelles", "BE", "Benelux", "1000", "fr", 2},
    {"Antwerpen", "BE", "Benelux", "2000", "nl", 1}, {"Milano", "IT", "South", "20121", "it", 4},
    {"Roma", "IT", "South", "00118", "it", 4}, {"Torino", "IT", "South", "10121", "it", 1},
    {"Madrid", "ES", "South", "28001", "es", 4}, {"Barcelona", "ES", "South", "08001", "es", 4},
    {"Valencia", "ES", "South", "46001", "es", 1}, {"London", "GB", "UK", "EC1A", "en-GB", 8},
    {"Manchester", "GB", "UK", "M1", "en-GB", 3}, {"Edinburgh", "GB", "UK", "EH1", "en-GB", 1},
    {"New York", "US", "North America", "10001", "en-US", 4},
    {"Chicago", "US", "North America", "60601", "en-US", 2},
    {"San Francisco", "US", "North America", "94102", "en-US", 2}};
#define NCITIES ((int)(sizeof CITIES / sizeof *CITIES))
static const char *STREETS[] = {"Hauptstraße", "Rue de la Paix", "Via Roma", "Calle Mayor",
                                "High Street", "Kerkstraat", "Bahnhofstraße", "Main Street",
                                "Schillerstraße", "Avenue Victor Hugo"};
static const char *DOMAINS[] = {"example.com", "example.org", "example.net", "mail.example",
                                "post.example"};
static const char *INDUSTRIES[] = {"retail", "manufacturing", "software", "hospitality",
                                   "healthcare", "logistics", "construction", "education",
                                   "finance", "media"};
static const char *COMPANY_SUFFIX[] = {"GmbH", "AG", "SARL", "S.p.A.", "S.L.", "Ltd", "B.V.",
                                       "Inc.", "& Co. KG", "Group"};
static const char *REPS[] = {"Katrin Vogel", "Marc Dupont", "Elena Conti", "Tom Baker",
                             "Sven Lindqvist", "Ines Moreno"};
static const char *TAGS[] = {"newsletter", "vip", "wholesale", "student", "eco", "early_adopter",
                             "event_2025", "trade_fair", "influencer", "employee"};
static const int TAG_W[] = {40, 5, 4, 8, 10, 6, 5, 4, 2, 1};
static const char *SOURCES[] = {"web", "referral", "event", "campaign", "partner", "store",
                                "phone", "social", "import", "other"};
static const int SOURCE_W[] = {35, 12, 5, 12, 5, 12, 4, 10, 4, 1};
static const char *ORDER_CHANNELS[] = {"web", "app", "store", "phone", "sales_rep", "partner",
                                       "marketplace"};
static const int ORDER_CHANNEL_W[] = {45, 15, 20, 4, 4, 3, 9};
static const char *SKUS[] = {"A-100", "A-220", "B-310", "B-315", "C-400", "C-410", "D-510",
                             "E-600", "E-620", "F-700", "G-801", "H-900"};
static const char *KINDS[] = {"call", "email", "visit", "social", "chat"};
static const int KIND_W[] = {25, 40, 5, 10, 20};
static const char *OUTCOMES[] = {"positive", "neutral", "negative", "no_response", "follow_up"};
static const int OUTCOME_W[] = {30, 40, 8, 12, 10};
static const char *SUBJECTS[] = {"Product question", "Offer follow-up", "Newsletter reply",
                                 "Delivery date", "Feedback", "Renewal", "Invoice copy",
                                 "Event invitation", "Introduction", "Price request"};
static const char *T_CATEGORIES[] = {"complaint", "question", "request", "return", "warranty",
                                     "billing", "delivery", "technical", "other"};
static const int T_ORDER_CAT_W[] = {30, 5, 5, 20, 8, 12, 18, 2, 0};
static const int T_GENERAL_CAT_W[] = {5, 40, 20, 0, 3, 10, 0, 15, 7};
static const char *T_SUBJECT[] = {"Damaged item", "Question about my account", "Change of address",
                                  "Return request", "Broken after two months", "Charged twice",
                                  "Parcel not arrived", "Cannot log in", "Other request"};
static const char *PRIORITIES[] = {"low", "normal", "high", "urgent"};
static const int PRIORITY_W[] = {25, 50, 18, 7};
static const char *T_CHANNELS[] = {"email", "phone", "web", "chat", "social", "store"};
static const int T_CHANNEL_W[] = {35, 25, 20, 12, 4, 4};
static const char *TEAMS[] = {"service", "billing", "technical"};
static const char *AGENT_NAMES[NAGENTS] = {
    "Petra Lang", "Ahmed Yilmaz", "Chiara Greco", "Jules Martin", "Sarah Klein", "Tim Novak",
    "Aylin Kaya", "Ben Hofer", "Rosa Marín", "Nils Berg", "Grace Okafor", "Omar Haddad"};
static const int AGENT_TEAM[NAGENTS] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2};

static const char *currency_of(const char *country)
{
    if (!strcmp(country, "GB"))
        return "GBP";
    if (!strcmp(country, "CH"))
        return "CHF";
    if (!strcmp(country, "US"))
        return "USD";
    return "EUR";
}

#define N(a) ((int)(sizeof a / sizeof *a))

/* ---- one contact's history -------------------------------------------- */

enum { ST_NEW, ST_ASSIGNED, ST_IN_PROGRESS, ST_RESOLVED, ST_CLOSED };
static const char *STATES[] = {"new", "assigned", "in_progress", "resolved", "closed"};

typedef struct p_order {
    int64_t at, amount;
    int status, channel, lines;
    int campaign;               /* attributed to this campaign, or -1 */
} p_order;
typedef struct p_deal {
    int64_t created, changed, close; /* close: actual (won, lost) or expected */
    int64_t value;
    int stage, order, source, lost_reason; /* order: index of the won order, or -1 */
} p_deal;
typedef struct p_survey {
    int64_t sent, answered;     /* answered: 0 when not */
    int state, score;
} p_survey;
typedef struct p_inter {
    int64_t at;
    int kind, outcome, subject, inbound, duration;
} p_inter;
typedef struct p_ticket {
    int64_t at;
    int order;                  /* index into the contact's orders, or -1 */
    int category, priority, channel, final_state, reopen;
} p_ticket;

typedef struct plan {
    rng r;
    int city, first, last, domain, street, source, company, b2b, consent_email, consent_sms;
    int rep, ntags, tags[3];
    int64_t acquired, birth;
    int norders, ninter, ntickets, ndeals, nsurveys;
    p_order o[MAX_ORDERS];
    p_inter in[MAX_INTER];
    p_ticket t[MAX_TICKETS];
    p_deal d[MAX_DEALS];
    p_survey sv[MAX_SURVEYS];
} plan;

typedef struct gen {
    const crm_demo_opts *o;
    uint64_t seed;
    int64_t start, end;         /* history, ms */
    long ncompanies;
    int ncampaigns;             /* campaign m runs [camp_at(m), + CAMPAIGN_DAYS) */
    char tag[24];               /* in every id and unique value of this run */
} gen;

#define CAMPAIGN_DAYS 14

static int64_t camp_at(const gen *g, int m)
{
    return g->start + (g->end - g->start) / g->ncampaigns * m + 2 * DAY;
}

/* The campaign running at t, or -1. */
static int camp_of(const gen *g, int64_t t)
{
    int m;
    if (g->ncampaigns <= 0 || t < g->start)
        return -1;
    m = (int)((t - g->start) / ((g->end - g->start) / g->ncampaigns));
    if (m >= g->ncampaigns || t < camp_at(g, m) || t >= camp_at(g, m) + CAMPAIGN_DAYS * DAY)
        return -1;
    return m;
}

static const char *ORDER_STATUS[] = {"pending", "paid", "shipped", "completed", "cancelled",
                                     "refunded"};

static void plan_sales(const gen *g, long i, plan *p);

static void plan_contact(const gen *g, long i, plan *p)
{
    rng *r = &p->r;
    double span = (double)(g->end - g->start);
    int cw[NCITIES];
    rng_seed(r, g->seed, (uint64_t)i + 1);
    for (int k = 0; k < NCITIES; k++)
        cw[k] = CITIES[k].weight;
    p->city = pick_w(r, cw, NCITIES);
    p->first = below(r, N(FIRST));
    p->last = below(r, N(LAST));
    p->domain = below(r, N(DOMAINS));
    p->street = below(r, N(STREETS));
    p->source = pick_w(r, SOURCE_W, N(SOURCE_W));
    p->b2b = chance(r, 0.15);
    p->company = p->b2b ? below(r, (int)g->ncompanies) : -1;
    p->consent_email = chance(r, 0.45);
    p->consent_sms = chance(r, 0.15);
    p->rep = below(r, N(REPS));
    p->ntags = 0;
    for (int k = 0; k < 3; k++) {
        int t = pick_w(r, TAG_W, N(TAG_W));
        int dup = 0;
        if (!chance(r, k == 0 ? 0.55 : 0.3))
            break;
        for (int j = 0; j < p->ntags; j++)
            dup |= p->tags[j] == t;
        if (!dup)
            p->tags[p->ntags++] = t;
    }
    if (p->b2b && p->ntags < 3 && chance(r, 0.5))
        p->tags[p->ntags++] = 2; /* wholesale */
    /* more customers lately: a growing business */
    p->acquired = g->start + (int64_t)(span * pow(u01(r), 0.75));
    p->birth = (int64_t)(-365 * 20 + below(r, 365 * 55)) * DAY; /* 1950..2005 */
    p->norders = p->ninter = p->ntickets = 0;

    int buyer = chance(r, 0.8);
    double rate = rgamma1(r, 0.9) / 0.9 * (1.0 / 13.0); /* purchases per day */
    double dropout = rbeta(r, 1.2, 24.0);
    double mean_amount = rlognorm(r, log(p->b2b ? 16000.0 : 4800.0), 0.55);
    int64_t last_active = p->acquired;
    if (buyer) {
        double t = (double)p->acquired + rexp(r, 5.0) * DAY;
        while (t < (double)g->end && p->norders < MAX_ORDERS) {
            p_order *o = &p->o[p->norders++];
            o->at = (int64_t)t;
            o->amount = (int64_t)(mean_amount * rlognorm(r, -0.125, 0.5));
            if (o->amount < 199)
                o->amount = 199 + below(r, 300);
            o->channel = pick_w(r, ORDER_CHANNEL_W, N(ORDER_CHANNEL_W));
            o->lines = 1 + (chance(r, 0.4) ? 1 + below(r, 3) : 0);
            if (g->end - o->at < 2 * DAY)
                o->status = below(r, 3); /* pending, paid, shipped */
            else if (chance(r, 0.035))
                o->status = 4;
            else if (chance(r, 0.025))
                o->status = 5;
            else
                o->status = 3;
            last_active = o->at;
            if (chance(r, dropout))
                break;
            t += rexp(r, 1.0 / rate) * DAY;
        }
    }
    /* interactions while the contact is active, and a little after */
    {
        double irate = rgamma1(r, 1.2) / 1.2 * (1.0 / 60.0);
        int64_t until = last_active + 60 * DAY;
        double t = (double)p->acquired + rexp(r, 2.0) * DAY;
        if (until > g->end)
            until = g->end;
        while (t < (double)until && p->ninter < MAX_INTER) {
            p_inter *in = &p->in[p->ninter++];
            in->at = (int64_t)t;
            in->kind = pick_w(r, KIND_W, N(KIND_W));
            in->outcome = pick_w(r, OUTCOME_W, N(OUTCOME_W));
            in->subject = below(r, N(SUBJECTS));
            in->inbound = chance(r, 0.45);
            in->duration = (int)rexp(r, in->kind == 2 ? 2700 : 360);
            t += rexp(r, 1.0 / irate) * DAY;
        }
    }
    /* tickets: about some orders, and general questions */
    for (int k = 0; k < p->norders + 1 && p->ntickets < MAX_TICKETS; k++) {
        int about = k < p->norders;
        if (!chance(r, about ? 0.03 : 0.08))
            continue;
        p_ticket *t = &p->t[p->ntickets++];
        if (about) {
            t->order = k;
            t->at = p->o[k].at + (int64_t)(rexp(r, 4.0) * DAY);
            t->category = pick_w(r, T_ORDER_CAT_W, N(T_ORDER_CAT_W));
        } else {
            t->order = -1;
            t->at = p->acquired + (int64_t)(u01(r) * (double)(g->end - p->acquired));
            t->category = pick_w(r, T_GENERAL_CAT_W, N(T_GENERAL_CAT_W));
        }
        if (t->at >= g->end)
            t->at = g->end - 1 - below(r, 3600000);
        t->priority = pick_w(r, PRIORITY_W, N(PRIORITY_W));
        t->channel = pick_w(r, T_CHANNEL_W, N(T_CHANNEL_W));
        t->reopen = 0;
        {
            double age = (double)(g->end - t->at) / DAY;
            if (age > 21) {
                t->final_state = chance(r, 0.93) ? ST_CLOSED : ST_RESOLVED;
                t->reopen = t->final_state == ST_CLOSED && chance(r, 0.06);
            } else if (age > 7) {
                t->final_state = chance(r, 0.6) ? ST_CLOSED : ST_RESOLVED;
            } else if (age > 1) {
                static const int w[] = {0, 15, 45, 25, 15};
                t->final_state = pick_w(r, w, 5);
            } else {
                static const int w[] = {0, 60, 40, 0, 0};
                t->final_state = pick_w(r, w, 5);
            }
        }
    }
    /* tickets in time order (their ids follow it) */
    for (int a = 1; a < p->ntickets; a++)
        for (int b = a; b > 0 && p->t[b].at < p->t[b - 1].at; b--) {
            p_ticket x = p->t[b];
            p->t[b] = p->t[b - 1];
            p->t[b - 1] = x;
        }
    plan_sales(g, i, p);
}

/* Deals, campaign attribution and NPS surveys: from a random stream of their
 * own, so that adding them left every other record of a seed as it was. */
enum { DS_QUALIFICATION, DS_NEEDS, DS_PROPOSAL, DS_NEGOTIATION, DS_WON, DS_LOST };
static const char *DEAL_STAGES[] = {"qualification", "needs_analysis", "proposal",
                                    "negotiation", "won", "lost"};
static const double DEAL_PROB[] = {0.1, 0.25, 0.5, 0.7, 1.0, 0.0};
static const char *LOST_REASONS[] = {"price", "competitor", "no budget", "no decision",
                                     "timing"};
static const char *DEAL_TOPICS[] = {"Framework agreement", "Annual supply", "Pilot order",
                                    "Store fit-out", "Service contract", "Volume discount"};
enum { SV_SENT, SV_ANSWERED, SV_EXPIRED };
static const char *SURVEY_STATES[] = {"sent", "answered", "expired"};
static const char *CAMPAIGN_CHANNELS[] = {"email", "email", "sms", "push", "mail", "social"};
static const char *CAMPAIGN_THEMES[] = {"Spring sale", "Summer collection", "Back to school",
                                        "Autumn offers", "Black Friday", "Winter sale",
                                        "Loyalty bonus", "New arrivals"};

static void plan_sales(const gen *g, long i, plan *p)
{
    rng r;
    rng_seed(&r, g->seed ^ 0x6a09e667f3bcc909ull, (uint64_t)i + 1);
    /* campaign attribution: orders placed while a campaign runs */
    for (int k = 0; k < p->norders; k++) {
        int m = camp_of(g, p->o[k].at);
        p->o[k].campaign = m >= 0 && chance(&r, p->consent_email ? 0.3 : 0.06) ? m : -1;
    }
    /* deals: business customers mostly */
    p->ndeals = p->b2b ? below(&r, MAX_DEALS) : chance(&r, 0.02);
    for (int k = 0; k < p->ndeals; k++) {
        p_deal *d = &p->d[k];
        int64_t age;
        d->created = p->acquired + (int64_t)(u01(&r) * (double)(g->end - p->acquired));
        d->order = -1;
        d->source = pick_w(&r, SOURCE_W, N(SOURCE_W));
        d->lost_reason = below(&r, N(LOST_REASONS));
        d->value = (int64_t)rlognorm(&r, log(16000.0), 0.6);
        /* won when the customer ordered within 60 days of it */
        for (int o = 0; o < p->norders; o++)
            if (p->o[o].at >= d->created && p->o[o].at < d->created + 60 * DAY &&
                p->o[o].status <= 3) {
                d->order = o;
                break;
            }
        age = (g->end - d->created) / DAY;
        if (d->order >= 0) {
            d->stage = DS_WON;
            d->close = d->changed = p->o[d->order].at;
            d->value = p->o[d->order].amount;
        } else if (age > 60) {
            d->stage = DS_LOST;
            d->close = d->changed = d->created + (20 + below(&r, 40)) * DAY;
        } else {
            d->stage = age < 7 ? DS_QUALIFICATION : age < 20 ? DS_NEEDS
                       : age < 40 ? DS_PROPOSAL : DS_NEGOTIATION;
            d->changed = d->created + (int64_t)(u01(&r) * (double)(g->end - d->created));
            d->close = d->created + 60 * DAY;
        }
    }
    /* NPS: some completed orders are followed by a survey two weeks later */
    p->nsurveys = 0;
    for (int k = 0; k < p->norders && p->nsurveys < MAX_SURVEYS; k++) {
        p_survey *v = &p->sv[p->nsurveys];
        int64_t sent = p->o[k].at + 14 * DAY;
        if (p->o[k].status != 3 || sent >= g->end || !chance(&r, 0.12))
            continue;
        p->nsurveys++;
        v->sent = sent;
        v->answered = 0;
        v->score = 0;
        if (chance(&r, g->end - sent > 30 * DAY ? 0.35 : 0.25)) {
            static const int w[] = {2, 1, 1, 2, 2, 4, 8, 13, 17, 25, 25}; /* 0..10 */
            v->state = SV_ANSWERED;
            v->score = pick_w(&r, w, N(w));
            v->answered = sent + (int64_t)(rexp(&r, 2.0) * DAY);
            if (v->answered >= g->end)
                v->answered = g->end - 1;
        } else {
            v->state = g->end - sent > 30 * DAY ? SV_EXPIRED : SV_SENT;
        }
    }
}

/* ---- records ------------------------------------------------------------- */

typedef struct rec_b {
    crm_value *m;
    int oom;
} rec_b;

static void put(rec_b *b, const char *k, crm_value *v)
{
    if (!v || crm_map_set(b->m, k, v) != 0)
        b->oom = 1;
}
static void put_s(rec_b *b, const char *k, const char *s) { put(b, k, crm_value_cstr(s)); }
/* The record built, or NULL (freed) when a put ran out of memory. */
static crm_value *rec_done(rec_b *b)
{
    if (b->oom) {
        crm_value_free(b->m);
        return NULL;
    }
    return b->m;
}
static void put_i(rec_b *b, const char *k, int64_t x) { put(b, k, crm_value_int(x)); }
static void put_b(rec_b *b, const char *k, int x) { put(b, k, crm_value_bool(x)); }

static void ascii_lower(char *out, size_t cap, const char *in)
{
    size_t n = 0;
    for (; *in && n + 1 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (c >= 'A' && c <= 'Z')
            out[n++] = (char)(c - 'A' + 'a');
        else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            out[n++] = (char)c;
        else if (c == 0xC3 && in[1]) { /* the accented letters of the lists */
            unsigned char d = (unsigned char)*++in;
            out[n++] = d == 0xBC ? 'u' : d == 0xB6 ? 'o' : d == 0xA4 ? 'a' : d == 0xA9 ? 'e'
                                   : d == 0xAD ? 'i' : d == 0xB3 ? 'o' : d == 0x89 ? 'e' : 'x';
        }
    }
    out[n] = '\0';
}

static crm_value *contact_rec(const gen *g, long i, const plan *p)
{
    rec_b b = {crm_value_map(), 0};
    char name[160], email[200], lf[64], ll[64], buf[96];
    const city *c = &CITIES[p->city];
    if (!b.m)
        return NULL;
    snprintf(name, sizeof name, "%s %s", FIRST[p->first], LAST[p->last]);
    ascii_lower(lf, sizeof lf, FIRST[p->first]);
    ascii_lower(ll, sizeof ll, LAST[p->last]);
    snprintf(email, sizeof email, "%s.%s.%s%ld@%s", lf, ll, g->tag, i, DOMAINS[p->domain]);
    put_s(&b, "name", name);
    put_s(&b, "email", email);
    snprintf(buf, sizeof buf, "K-%s-%07ld", g->tag, i);
    put_s(&b, "code", buf);
    snprintf(buf, sizeof buf, "+%d %03ld %07ld", 30 + p->city, 100 + i % 900, (i * 7919) % 10000000);
    put_s(&b, "phone", buf);
    snprintf(buf, sizeof buf, "%s %ld", STREETS[p->street], 1 + i % 180);
    put_s(&b, "street", buf);
    put_s(&b, "city", c->name);
    put_s(&b, "postcode", c->postcode);
    put_s(&b, "country", c->country);
    put_s(&b, "region", c->region);
    put_s(&b, "language", c->lang);
    put_s(&b, "currency", currency_of(c->country));
    put_s(&b, "source", SOURCES[p->source]);
    put_s(&b, "customer_type", p->b2b ? "b2b" : "consumer");
    put_s(&b, "owner", REPS[p->rep]);
    put_b(&b, "consent_email", p->consent_email);
    put_b(&b, "consent_sms", p->consent_sms);
    put_i(&b, "consent_updated_at", p->acquired);
    if (!p->b2b)
        put_i(&b, "birth_date", p->birth);
    if (p->b2b) {
        snprintf(buf, sizeof buf, "co_%s-%05d", g->tag, p->company);
        put_s(&b, "company", buf);
        put_s(&b, "job_title", (const char *[]){"Buyer", "Purchasing Manager", "CEO",
                                                "Office Manager", "Head of Operations"}[i % 5]);
        put_s(&b, "payment_terms", "net_30");
        put_i(&b, "credit_limit", 500000 + (i % 10) * 100000);
    }
    if (p->ntags) {
        crm_value *tags = crm_value_arr();
        for (int k = 0; tags && k < p->ntags; k++)
            if (crm_arr_push(tags, crm_value_cstr(TAGS[p->tags[k]])) != 0)
                b.oom = 1;
        put(&b, "tags", tags);
    }
    {
        crm_value *extra = crm_value_map();
        if (!extra || crm_map_set(extra, "acquired_at", crm_value_int(p->acquired)) != 0 ||
            crm_map_set(extra, "demo", crm_value_bool(1)) != 0)
            b.oom = 1;
        put(&b, "extra", extra);
    }
    return rec_done(&b);
}

static crm_value *order_rec(const gen *g, const char *contact, const plan *p, const p_order *o,
                            uint64_t number)
{
    rec_b b = {crm_value_map(), 0};
    char buf[64];
    crm_value *items = crm_value_arr();
    rng r;
    if (!b.m || !items) {
        crm_value_free(b.m);
        crm_value_free(items);
        return NULL;
    }
    rng_seed(&r, g->seed ^ 0x5bd1e995, number);
    put_s(&b, "contact", contact);
    if (p->company >= 0) {
        snprintf(buf, sizeof buf, "co_%s-%05d", g->tag, p->company);
        put_s(&b, "company", buf);
    }
    snprintf(buf, sizeof buf, "%s-%09" PRIu64, g->tag, number);
    put_s(&b, "number", buf);
    put_i(&b, "amount", o->amount);
    put_s(&b, "currency", currency_of(CITIES[p->city].country));
    put_i(&b, "ordered_at", o->at);
    put_s(&b, "channel", ORDER_CHANNELS[o->channel]);
    put_s(&b, "status", ORDER_STATUS[o->status]);
    if (o->campaign >= 0) {
        snprintf(buf, sizeof buf, "cp_%s-%03d", g->tag, o->campaign);
        put_s(&b, "campaign", buf);
    }
    if (o->channel == 4 || p->b2b)
        put_s(&b, "owner", REPS[p->rep]);
    {
        int64_t left = o->amount;
        for (int k = 0; k < o->lines; k++) {
            crm_value *line = crm_value_map();
            int64_t price = k + 1 == o->lines ? left : left / (o->lines - k) / 2 + 1;
            left -= price;
            if (!line || crm_map_set(line, "sku", crm_value_cstr(SKUS[below(&r, N(SKUS))])) ||
                crm_map_set(line, "qty", crm_value_int(1)) ||
                crm_map_set(line, "price", crm_value_int(price)) || crm_arr_push(items, line))
                b.oom = 1;
        }
    }
    put(&b, "items", items);
    return rec_done(&b);
}

static crm_value *inter_rec(const gen *g, const char *contact, const plan *p, const p_inter *in)
{
    rec_b b = {crm_value_map(), 0};
    char buf[64];
    if (!b.m)
        return NULL;
    put_s(&b, "contact", contact);
    if (p->company >= 0) {
        snprintf(buf, sizeof buf, "co_%s-%05d", g->tag, p->company);
        put_s(&b, "company", buf);
    }
    put_s(&b, "kind", KINDS[in->kind]);
    put_s(&b, "direction", in->inbound ? "inbound" : "outbound");
    put_i(&b, "at", in->at);
    if (in->kind == 0 || in->kind == 2 || in->kind == 4)
        put_i(&b, "duration_s", in->duration);
    put_s(&b, "owner", REPS[p->rep]);
    put_s(&b, "subject", SUBJECTS[in->subject]);
    put_s(&b, "outcome", OUTCOMES[in->outcome]);
    return rec_done(&b);
}

static int team_of(int category)
{
    return category == 5 ? 1 : category == 7 ? 2 : 0;
}

static crm_value *ticket_rec(const char *contact, const char *order, const p_ticket *t)
{
    rec_b b = {crm_value_map(), 0};
    crm_value *extra = crm_value_map();
    if (!b.m || !extra) {
        crm_value_free(b.m);
        crm_value_free(extra);
        return NULL;
    }
    put_s(&b, "contact", contact);
    if (order)
        put_s(&b, "order", order);
    put_s(&b, "subject", T_SUBJECT[t->category]);
    put_s(&b, "category", T_CATEGORIES[t->category]);
    put_s(&b, "priority", PRIORITIES[t->priority]);
    put_s(&b, "state", "new");
    put_s(&b, "channel", T_CHANNELS[t->channel]);
    put_s(&b, "team", TEAMS[team_of(t->category)]);
    if (crm_map_set(extra, "reported_at", crm_value_int(t->at)) != 0)
        b.oom = 1;
    put(&b, "extra", extra);
    return rec_done(&b);
}

static crm_value *deal_rec(const gen *g, const char *contact, long i, const plan *p,
                          const p_deal *d)
{
    rec_b b = {crm_value_map(), 0};
    char buf[96];
    if (!b.m)
        return NULL;
    put_s(&b, "contact", contact);
    if (p->company >= 0) {
        snprintf(buf, sizeof buf, "co_%s-%05d", g->tag, p->company);
        put_s(&b, "company", buf);
    }
    snprintf(buf, sizeof buf, "%s", DEAL_TOPICS[(i + d->source) % N(DEAL_TOPICS)]);
    put_s(&b, "title", buf);
    put_s(&b, "stage", DEAL_STAGES[d->stage]);
    put_i(&b, "stage_changed_at", d->changed);
    put_i(&b, "expected_value", d->value);
    put_s(&b, "currency", currency_of(CITIES[p->city].country));
    put(&b, "probability", crm_value_num(DEAL_PROB[d->stage]));
    put_s(&b, "owner", REPS[p->rep]);
    put_i(&b, "close_date", d->close);
    put_s(&b, "source", SOURCES[d->source]);
    if (d->stage == DS_LOST)
        put_s(&b, "lost_reason", LOST_REASONS[d->lost_reason]);
    if (d->order >= 0) {
        snprintf(buf, sizeof buf, "o_%s-%07ld-%03d", g->tag, i, d->order);
        put_s(&b, "order", buf);
    }
    return rec_done(&b);
}

static crm_value *survey_rec(const char *contact, const p_survey *v)
{
    rec_b b = {crm_value_map(), 0};
    if (!b.m)
        return NULL;
    put_s(&b, "contact", contact);
    put_s(&b, "kind", "nps");
    put_s(&b, "state", SURVEY_STATES[v->state]);
    put_i(&b, "sent_at", v->sent);
    if (v->state == SV_ANSWERED) {
        put_i(&b, "score", v->score);
        put_i(&b, "answered_at", v->answered);
    }
    return rec_done(&b);
}

static crm_value *campaign_rec(const gen *g, int m, uint64_t responses)
{
    rec_b b = {crm_value_map(), 0};
    char buf[128];
    int64_t at = camp_at(g, m), till = at + CAMPAIGN_DAYS * DAY;
    time_t secs = (time_t)(at / 1000);
    struct tm tm;
    if (!b.m)
        return NULL;
    gmtime_r(&secs, &tm);
    snprintf(buf, sizeof buf, "%s %04d-%02d", CAMPAIGN_THEMES[m % N(CAMPAIGN_THEMES)],
             tm.tm_year + 1900, tm.tm_mon + 1);
    put_s(&b, "name", buf);
    snprintf(buf, sizeof buf, "s_%s-%02d", g->tag, m % 6); /* the demo's segments */
    put_s(&b, "segment", buf);
    put_s(&b, "channel", CAMPAIGN_CHANNELS[m % N(CAMPAIGN_CHANNELS)]);
    put_s(&b, "state", till <= g->end ? "completed" : at <= g->end ? "running" : "scheduled");
    put_i(&b, "starts_at", at);
    put_i(&b, "ends_at", till);
    put_i(&b, "budget", 500000 + 250000 * (m % 4));
    put_s(&b, "currency", "EUR");
    put_s(&b, "owner", REPS[m % N(REPS)]);
    put_i(&b, "response_count", (int64_t)responses);
    return rec_done(&b);
}

/* ---- the write path -------------------------------------------------------- */

enum { K_PLAIN, K_TICKET, K_STEP };

typedef struct tstep {
    char id[96];
    crm_value *patch;
} tstep;

typedef struct ticket_meta {
    int final_state, reopen, agent;
} ticket_meta;

typedef struct demo {
    crm_datalock *lock;     /* the data folder is ours while we write */
    const crm_demo_opts *o;
    gen g;
    crm_schema *schema;
    crm_store *store;
    crm_bus *bus;
    crm_plugins *plugins;
    crm_lua *lua;
    crm_demo_stats st;
    crm_progress pr;
    /* the batch being filled */
    crm_write w[MAX_UNITS];
    crm_unit u[MAX_UNITS + 1];
    crm_value *data[MAX_UNITS];
    char ids[MAX_UNITS][96];
    int kind[MAX_UNITS];
    ticket_meta tm[MAX_UNITS];
    size_t n;
    uint64_t camp_resp[MAX_CAMPAIGNS]; /* orders attributed, from the plans */
    /* workflow steps waiting for the next batch */
    tstep *q;
    size_t nq, capq;
    int logged;
} demo;

static void demo_log(void *ud, int level, const char *who, const char *msg)
{
    demo *d = ud;
    if (level < CRM_LOG_ERROR) /* a retried hook (a map growth, say) is counted, not shown */
        return;
    if (d->logged++ < 20) {
        if (d->pr.tty && d->pr.shown)
            fputs("\r\033[K", stderr);
        fprintf(stderr, "crmd demo: %s %s: %s\n", level == CRM_LOG_WARN ? "warning" : "error",
                who, msg);
    }
}

static void note_refused(demo *d, const char *coll, const crm_err *e)
{
    d->st.refused++;
    if (d->logged++ < 20) {
        if (d->pr.tty && d->pr.shown)
            fputs("\r\033[K", stderr);
        fprintf(stderr, "crmd demo: a %s write was refused: %s\n", coll, e->msg);
    }
}

static int push_step(demo *d, const char *id, const char *state, int agent)
{
    tstep *s;
    if (d->nq == d->capq) {
        size_t cap = d->capq ? d->capq * 2 : 256;
        tstep *q = realloc(d->q, cap * sizeof *q);
        if (!q)
            return -1;
        d->q = q;
        d->capq = cap;
    }
    s = &d->q[d->nq];
    snprintf(s->id, sizeof s->id, "%s", id);
    if (!(s->patch = crm_value_map()) ||
        crm_map_set(s->patch, "state", crm_value_cstr(state)) != 0) {
        crm_value_free(s->patch);
        return -1;
    }
    if (agent >= 0) {
        char a[64];
        snprintf(a, sizeof a, "ag_%s-%02d", d->g.tag, agent);
        if (crm_map_set(s->patch, "assignee", crm_value_cstr(a)) != 0) {
            crm_value_free(s->patch);
            return -1;
        }
    }
    d->nq++;
    return 0;
}

/* The workflow steps from the state a ticket was stored in to its planned one. */
static int plan_steps(demo *d, const char *id, const char *stored, const ticket_meta *m)
{
    int at = ST_NEW;
    for (int k = 0; k < 5; k++)
        if (stored && !strcmp(stored, STATES[k]))
            at = k;
    for (int k = at + 1; k <= m->final_state; k++)
        if (push_step(d, id, STATES[k], k == ST_ASSIGNED ? m->agent : -1) != 0)
            return -1;
    if (m->reopen && m->final_state == ST_CLOSED)
        for (int k = ST_IN_PROGRESS; k <= ST_CLOSED; k++)
            if (push_step(d, id, STATES[k], -1) != 0)
                return -1;
    return 0;
}

static int add(demo *d, crm_op op, const char *coll, const char *id, crm_value *data, int kind,
               crm_err *err);

/* The stats counter of records created in coll (tickets are counted by
 * kind: creates and workflow steps apart), or NULL. */
static uint64_t *made_counter(crm_demo_stats *st, const char *coll)
{
    static const struct {
        const char *coll;
        size_t off;
    } counters[] = {
        {"contacts", offsetof(crm_demo_stats, contacts)},
        {"orders", offsetof(crm_demo_stats, orders)},
        {"interactions", offsetof(crm_demo_stats, interactions)},
        {"companies", offsetof(crm_demo_stats, companies)},
        {"agents", offsetof(crm_demo_stats, agents)},
        {"segments", offsetof(crm_demo_stats, segments)},
        {"campaigns", offsetof(crm_demo_stats, campaigns)},
        {"deals", offsetof(crm_demo_stats, deals)},
        {"surveys", offsetof(crm_demo_stats, surveys)},
    };
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++)
        if (strcmp(coll, counters[i].coll) == 0)
            return (uint64_t *)((char *)st + counters[i].off);
    return NULL;
}

/* Applies the batch with the bus's unit (after-hooks and due timers), as the
 * server's loop does; then queues the workflow steps of new tickets. */
static int flush(demo *d, crm_err *err)
{
    int rc, ran;
    for (size_t i = 0; i < d->n; i++) {
        d->w[i].data = d->data[i];
        d->u[i].writes = &d->w[i];
        d->u[i].n = 1;
        d->u[i].fn = NULL;
    }
    rc = crm_bus_apply(d->bus, d->u, d->n, &ran, err); /* d->u has room for the bus's unit */
    if (!d->n && !ran)
        return CRM_OK;
    d->st.batches++;
    for (size_t i = 0; i < d->n; i++) {
        crm_write *w = &d->w[i];
        if (rc == CRM_OK && d->u[i].rc != CRM_OK) {
            note_refused(d, w->coll, &d->u[i].err);
        } else if (rc == CRM_OK) {
            uint64_t *made = made_counter(&d->st, w->coll);
            if (made)
                ++*made;
            else if (d->kind[i] == K_TICKET)
                d->st.tickets++;
            else if (d->kind[i] == K_STEP)
                d->st.ticket_updates++;
            if (d->kind[i] != K_STEP)
                d->pr.done++;
            if (d->kind[i] == K_TICKET) {
                const crm_value *s = w->result ? crm_map_get(w->result, "state") : NULL;
                if (plan_steps(d, d->ids[i], s && s->type == CRM_T_STR ? s->u.str.s : NULL,
                               &d->tm[i]) != 0 &&
                    rc == CRM_OK)
                    rc = crm_err_set(err, CRM_INTERNAL, "out of memory");
            }
        }
        crm_write_clear(w);
        crm_value_free(d->data[i]);
        d->data[i] = NULL;
    }
    d->n = 0;
    if (rc != CRM_OK)
        return rc;
    /* the steps go into the next batch, each ticket's in order */
    {
        size_t nq = d->nq;
        d->nq = 0;
        for (size_t i = 0; i < nq; i++) {
            if (rc == CRM_OK)
                rc = add(d, CRM_OP_UPDATE, "tickets", d->q[i].id, d->q[i].patch, K_STEP, err);
            else
                crm_value_free(d->q[i].patch);
        }
    }
    return rc;
}

/* A bus-only batch: after-hooks and due timers, no writes of ours. */
static int bus_round(demo *d, int *did, crm_err *err)
{
    crm_unit u[1];
    return crm_bus_apply(d->bus, u, 0, did, err);
}

static uint64_t lag(demo *d)
{
    crm_bus_stats st;
    crm_bus_stats_get(d->bus, &st);
    return crm_store_last_seq(d->store) - st.min_cursor;
}

static int add(demo *d, crm_op op, const char *coll, const char *id, crm_value *data, int kind,
               crm_err *err)
{
    crm_write *w;
    if (!data)
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    if (d->n >= MAX_UNITS) { /* cannot happen: steps fit beside a batch */
        crm_value_free(data);
        return crm_err_set(err, CRM_INTERNAL, "demo: batch overflow");
    }
    w = &d->w[d->n];
    memset(w, 0, sizeof *w);
    memset(&d->u[d->n], 0, sizeof d->u[d->n]);
    snprintf(d->ids[d->n], sizeof d->ids[d->n], "%s", id);
    w->op = op;
    w->coll = coll;
    w->id = d->ids[d->n];
    d->data[d->n] = data;
    d->kind[d->n] = kind;
    d->n++;
    if (kind == K_STEP || d->n < BATCH)
        return CRM_OK;
    int rc = flush(d, err);
    /* after-hooks keep up: the feed they trail by stays bounded */
    while (rc == CRM_OK && lag(d) > LAG_MAX) {
        int did;
        rc = bus_round(d, &did, err);
        if (!did)
            break;
    }
    crm_progress_show(&d->pr, 0);
    return rc;
}

/* Runs after-hooks and timers until nothing is due within DRAIN_WAIT_MS. */
static int drain(demo *d, crm_err *err)
{
    uint64_t base = crm_store_last_seq(d->store) - lag(d); /* progress: feed entries run */
    int rc = flush(d, err);
    while (rc == CRM_OK && d->n)
        rc = flush(d, err);
    while (rc == CRM_OK) {
        int did;
        if ((rc = bus_round(d, &did, err)) != CRM_OK)
            break;
        if (d->n)
            rc = flush(d, err);
        if (!did) {
            int64_t ms = crm_bus_next_work_ms(d->bus);
            if (ms < 0 || ms > DRAIN_WAIT_MS)
                break;
            if (ms > 0)
                usleep((useconds_t)(ms > 200 ? 200 : ms) * 1000);
        }
        {
            uint64_t last = crm_store_last_seq(d->store), l = lag(d);
            d->pr.total = last - base;
            d->pr.done = last - l - base;
        }
        crm_progress_show(&d->pr, 0);
    }
    return rc;
}

/* ---- the value recomputation ---------------------------------------------- */

static int call_method(demo *d, const char *method, crm_err *err)
{
    crm_value *result = NULL;
    int rc = crm_bus_call_now(d->bus, method, NULL, "demo", "admin", &result, err);
    crm_value_free(result);
    return rc;
}

/* ---- the run ---------------------------------------------------------------- */

void crm_demo_opts_default(crm_demo_opts *o)
{
    memset(o, 0, sizeof *o);
    o->data = "./data";
    o->schemas = "./schemas";
    o->scripts = "./scripts";
    o->plugins = "./plugins";
    o->contacts = 100000;
    o->seed = 1;
    o->years = 2;
    o->value_recompute = 1;
    o->progress = 1;
}

static const char *SEGMENTS[][3] = {
    {"Loyal customers", "Customers in the loyal stage", "{\"stage\": \"loyal\"}"},
    {"At risk or churned", "Customers who stopped buying",
     "{\"stage\": [\"at_risk\", \"churned\"]}"},
    {"Big spenders", "1,000.00 or more spent in total",
     "{\"field\": \"total_spent\", \"gte\": 100000}"},
    {"Newsletter DACH", "E-mail consent in Germany, Austria or Switzerland",
     "{\"all\": [{\"field\": \"region\", \"eq\": \"DACH\"}, {\"field\": \"consent_email\", "
     "\"eq\": true}]}"},
    {"Champions (RFM)", "Recent, frequent, high spend",
     "{\"all\": [{\"score\": \"rfm_r\", \"gte\": 4}, {\"score\": \"rfm_f\", \"gte\": 4}, "
     "{\"score\": \"rfm_m\", \"gte\": 4}]}"},
    {"VIP tag", "Contacts tagged vip", "{\"tags\": {\"any\": [\"vip\"]}}"},
};

static int write_setup(demo *d, crm_err *err)
{
    char id[96], buf[256];
    rng r;
    int rc = CRM_OK;
    rng_seed(&r, d->g.seed, 0);
    for (int a = 0; a < NAGENTS && rc == CRM_OK; a++) {
        rec_b b = {crm_value_map(), 0};
        char mail[96];
        if (!b.m)
            return crm_err_set(err, CRM_INTERNAL, "out of memory");
        snprintf(id, sizeof id, "ag_%s-%02d", d->g.tag, a);
        ascii_lower(mail, sizeof mail, AGENT_NAMES[a]);
        snprintf(buf, sizeof buf, "%s@service.example", mail);
        put_s(&b, "name", AGENT_NAMES[a]);
        put_s(&b, "email", buf);
        put_s(&b, "team", TEAMS[AGENT_TEAM[a]]);
        put_b(&b, "active", 1);
        put_i(&b, "max_open", 400);
        rc = add(d, CRM_OP_CREATE, "agents", id, rec_done(&b), K_PLAIN, err);
    }
    for (long c = 0; c < d->g.ncompanies && rc == CRM_OK; c++) {
        rec_b b = {crm_value_map(), 0};
        const city *ci = &CITIES[below(&r, NCITIES)];
        char web[64];
        if (!b.m)
            return crm_err_set(err, CRM_INTERNAL, "out of memory");
        snprintf(id, sizeof id, "co_%s-%05ld", d->g.tag, c);
        snprintf(buf, sizeof buf, "%s %s", LAST[below(&r, N(LAST))],
                 COMPANY_SUFFIX[below(&r, N(COMPANY_SUFFIX))]);
        put_s(&b, "name", buf);
        put_s(&b, "legal_name", buf);
        ascii_lower(web, sizeof web, buf);
        snprintf(buf, sizeof buf, "www.%s%ld.example", web, c);
        put_s(&b, "website", buf);
        snprintf(buf, sizeof buf, "B-%s-%05ld", d->g.tag, c);
        put_s(&b, "code", buf);
        put_s(&b, "city", ci->name);
        put_s(&b, "country", ci->country);
        put_s(&b, "region", ci->region);
        put_s(&b, "currency", currency_of(ci->country));
        put_s(&b, "industry", INDUSTRIES[below(&r, N(INDUSTRIES))]);
        put_i(&b, "employees", (int64_t)rlognorm(&r, log(60), 1.3) + 1);
        put_s(&b, "owner", REPS[below(&r, N(REPS))]);
        put_s(&b, "customer_type", chance(&r, 0.1) ? "channel" : "b2b");
        put_s(&b, "payment_terms", "net_30");
        rc = add(d, CRM_OP_CREATE, "companies", id, rec_done(&b), K_PLAIN, err);
    }
    for (int s = 0; s < N(SEGMENTS) && rc == CRM_OK; s++) {
        rec_b b = {crm_value_map(), 0};
        crm_value *rules;
        crm_limits lim = CRM_LIMITS_DEFAULT;
        if (!b.m)
            return crm_err_set(err, CRM_INTERNAL, "out of memory");
        if (!(rules = crm_json_decode(SEGMENTS[s][2], strlen(SEGMENTS[s][2]), &lim, err))) {
            crm_value_free(b.m);
            return rc = CRM_INTERNAL;
        }
        /* a segment name is unique: this run's tag keeps a --force run apart */
        if (strchr(d->g.tag, 'r'))
            snprintf(buf, sizeof buf, "%s (%s)", SEGMENTS[s][0], d->g.tag);
        else
            snprintf(buf, sizeof buf, "%s", SEGMENTS[s][0]);
        put_s(&b, "name", buf);
        put_s(&b, "description", SEGMENTS[s][1]);
        put_s(&b, "target", "contacts");
        put(&b, "rules", rules);
        put_s(&b, "owner", "demo");
        snprintf(id, sizeof id, "s_%s-%02d", d->g.tag, s);
        rc = add(d, CRM_OP_CREATE, "segments", id, rec_done(&b), K_PLAIN, err);
    }
    for (int m = 0; m < d->g.ncampaigns && rc == CRM_OK; m++) {
        snprintf(id, sizeof id, "cp_%s-%03d", d->g.tag, m);
        rc = add(d, CRM_OP_CREATE, "campaigns", id, campaign_rec(&d->g, m, d->camp_resp[m]),
                 K_PLAIN, err);
    }
    if (rc == CRM_OK)
        rc = drain(d, err); /* agents, segments and campaigns in place before the contacts */
    return rc;
}

static int write_contact(demo *d, long i, plan *p, crm_err *err)
{
    char cid[96], oid[96], id[96];
    uint64_t obase = (uint64_t)i * MAX_ORDERS;
    int rc;
    snprintf(cid, sizeof cid, "c_%s-%07ld", d->g.tag, i);
    if ((rc = add(d, CRM_OP_CREATE, "contacts", cid, contact_rec(&d->g, i, p), K_PLAIN, err)))
        return rc;
    /* orders and interactions merged in time order, as they happened */
    {
        int a = 0, b = 0;
        while (a < p->norders || b < p->ninter) {
            if (b >= p->ninter || (a < p->norders && p->o[a].at <= p->in[b].at)) {
                snprintf(oid, sizeof oid, "o_%s-%07ld-%03d", d->g.tag, i, a);
                rc = add(d, CRM_OP_CREATE, "orders", oid,
                         order_rec(&d->g, cid, p, &p->o[a], obase + (uint64_t)a), K_PLAIN, err);
                a++;
            } else {
                snprintf(id, sizeof id, "i_%s-%07ld-%03d", d->g.tag, i, b);
                rc = add(d, CRM_OP_CREATE, "interactions", id, inter_rec(&d->g, cid, p, &p->in[b]),
                         K_PLAIN, err);
                b++;
            }
            if (rc)
                return rc;
        }
    }
    for (int k = 0; k < p->ndeals; k++) {
        snprintf(id, sizeof id, "d_%s-%07ld-%d", d->g.tag, i, k);
        if ((rc = add(d, CRM_OP_CREATE, "deals", id, deal_rec(&d->g, cid, i, p, &p->d[k]),
                      K_PLAIN, err)))
            return rc;
    }
    for (int k = 0; k < p->nsurveys; k++) {
        snprintf(id, sizeof id, "sv_%s-%07ld-%d", d->g.tag, i, k);
        if ((rc = add(d, CRM_OP_CREATE, "surveys", id, survey_rec(cid, &p->sv[k]), K_PLAIN,
                      err)))
            return rc;
    }
    for (int k = 0; k < p->ntickets; k++) {
        p_ticket *t = &p->t[k];
        int team = team_of(t->category), agent, nteam = 0, pickn;
        for (int a = 0; a < NAGENTS; a++)
            nteam += AGENT_TEAM[a] == team;
        pickn = (int)((i + k) % nteam);
        for (agent = 0; agent < NAGENTS; agent++)
            if (AGENT_TEAM[agent] == team && pickn-- == 0)
                break;
        if (t->order >= 0)
            snprintf(oid, sizeof oid, "o_%s-%07ld-%03d", d->g.tag, i, t->order);
        snprintf(id, sizeof id, "t_%s-%07ld-%02d", d->g.tag, i, k);
        d->tm[d->n] = (ticket_meta){t->final_state, t->reopen, agent};
        if ((rc = add(d, CRM_OP_CREATE, "tickets", id,
                      ticket_rec(cid, t->order >= 0 ? oid : NULL, t), K_TICKET, err)))
            return rc;
    }
    return CRM_OK;
}

static int64_t today_ms(void)
{
    time_t now = time(NULL);
    return (int64_t)(now - now % 86400) * 1000;
}

int crm_demo_run(const crm_demo_opts *o, crm_err *err)
{
    demo *d = calloc(1, sizeof *d);
    plan *p = malloc(sizeof *p);
    crm_store_opts so;
    crm_bus_opts bo;
    double t0 = crm_progress_now(), t1;
    uint64_t existing = 0, total = 0;
    int rc;

    crm_err_clear(err);
    if (!d || !p) {
        free(d);
        free(p);
        return crm_err_set(err, CRM_INTERNAL, "out of memory");
    }
    d->o = o;
    crm_progress_init(&d->pr, "crmd demo", o->progress);
    d->g.o = o;
    d->g.seed = o->seed;
    d->g.end = o->end_ms ? o->end_ms : today_ms();
    d->g.start = d->g.end - (int64_t)(o->years > 0 ? o->years : 2) * 365 * DAY;
    d->g.ncompanies = o->contacts / 40 > 5 ? o->contacts / 40 : 5;
    d->g.ncampaigns = (o->years > 0 ? o->years : 2) * 12;
    if (d->g.ncampaigns > MAX_CAMPAIGNS)
        d->g.ncampaigns = MAX_CAMPAIGNS;

    if ((rc = crm_schema_load_dir(o->schemas, &d->schema, err)) != CRM_OK)
        goto out;
    crm_store_opts_default(&so);
    so.no_sync = o->no_sync;
    if (so.map_size < ((size_t)1 << 30))
        so.map_size = (size_t)1 << 30; /* fewer map growths (each retries a batch) */
    if ((rc = crm_datalock_take(o->data, "crmd demo", &d->lock, err)) != CRM_OK ||
        (rc = crm_store_open(o->data, d->schema, &so, &d->store, err)) != CRM_OK)
        goto out;
    {
        crm_txn *t;
        if ((rc = crm_store_begin_read(d->store, &t, err)) != CRM_OK)
            goto out;
        for (size_t c = 0; c < d->schema->ncolls; c++) {
            uint64_t k = 0;
            if (crm_txn_count(t, d->schema->colls[c].name, &k, err) == CRM_OK)
                existing += k;
        }
        crm_txn_end(t);
        crm_err_clear(err);
    }
    if (existing && !o->force) {
        rc = crm_err_set(err, CRM_CONFLICT,
                         "%s already holds %" PRIu64 " records; crmd demo fills an empty store "
                         "(--force adds to it)",
                         o->data, existing);
        goto out;
    }
    if (existing)
        snprintf(d->g.tag, sizeof d->g.tag, "d%" PRIu64 "r%" PRIu64, o->seed,
                 crm_store_last_seq(d->store));
    else
        snprintf(d->g.tag, sizeof d->g.tag, "d%" PRIu64, o->seed);
    crm_bus_opts_default(&bo);
    bo.log = demo_log;
    bo.log_ud = d;
    bo.round_budget_ms = 0; /* no client waits on the loop here: rounds as long as they need */
    if ((rc = crm_bus_new(d->store, &bo, &d->bus, err)) != CRM_OK)
        goto out;
    /* plugins first, then scripts: hooks run in that order (as served) */
    if ((rc = crm_plugins_load(d->bus, o->plugins, &d->plugins, err)) != CRM_OK)
        goto out;
    if ((rc = crm_lua_open(d->bus, o->scripts, NULL, &d->lua, err)) != CRM_OK)
        goto out;
    if (d->pr.on)
        fprintf(stderr,
                "crmd demo: %ld contacts over %d years (seed %" PRIu64 ") into %s; %zu plugins, "
                "%zu scripts\n",
                o->contacts, o->years, o->seed, o->data, crm_plugins_count(d->plugins),
                crm_lua_count(d->lua));

    /* what will be written, for the progress bar */
    for (long i = 0; i < o->contacts; i++) {
        plan_contact(&d->g, i, p);
        total += 1 + (uint64_t)p->norders + (uint64_t)p->ninter + (uint64_t)p->ntickets +
                 (uint64_t)p->ndeals + (uint64_t)p->nsurveys;
        for (int k = 0; k < p->norders; k++)
            if (p->o[k].campaign >= 0)
                d->camp_resp[p->o[k].campaign]++;
    }
    crm_progress_phase(&d->pr, "setup", (uint64_t)NAGENTS + (uint64_t)d->g.ncompanies +
                                            N(SEGMENTS) + (uint64_t)d->g.ncampaigns);
    if ((rc = write_setup(d, err)) != CRM_OK)
        goto out;
    crm_progress_show(&d->pr, 1);
    crm_progress_phase(&d->pr, "records", total);
    for (long i = 0; i < o->contacts && rc == CRM_OK; i++) {
        plan_contact(&d->g, i, p);
        rc = write_contact(d, i, p, err);
    }
    if (rc == CRM_OK)
        rc = flush(d, err);
    if (rc != CRM_OK)
        goto out;
    crm_progress_show(&d->pr, 1);
    t1 = crm_progress_now();
    d->st.seconds_records = t1 - t0;
    crm_progress_phase(&d->pr, "hooks", 0);
    if ((rc = drain(d, err)) != CRM_OK)
        goto out;
    crm_progress_show(&d->pr, 1);
    d->st.seconds_drain = crm_progress_now() - t1;
    if (o->value_recompute && crm_bus_has_method(d->bus, "value.recompute")) {
        double t2 = crm_progress_now();
        crm_progress_phase(&d->pr, "value", 0);
        if ((rc = call_method(d, "value.recompute", err)) != CRM_OK)
            goto out;
        if ((rc = drain(d, err)) != CRM_OK)
            goto out;
        crm_progress_show(&d->pr, 1);
        d->st.seconds_value = crm_progress_now() - t2;
    }
out:
    if (d->bus) {
        crm_bus_stats bs;
        crm_bus_stats_get(d->bus, &bs);
        d->st.hook_runs = bs.hook_runs;
        d->st.timer_runs = bs.timer_runs;
        d->st.hook_failures = bs.hook_failures;
        d->st.timer_failures = bs.timer_failures;
        d->st.dead_letters = bs.dead_letters;
    }
    if (d->store)
        d->st.last_seq = crm_store_last_seq(d->store);
    d->st.seconds_total = crm_progress_now() - t0;
    if (o->stats)
        *o->stats = d->st;
    for (size_t i = 0; i < d->n; i++)
        crm_value_free(d->data[i]);
    for (size_t i = 0; i < d->nq; i++)
        crm_value_free(d->q[i].patch);
    free(d->q);
    crm_lua_close(d->lua);
    crm_plugins_unload(d->plugins);
    crm_bus_free(d->bus);
    crm_store_close(d->store);
    crm_schema_free(d->schema);
    crm_datalock_release(d->lock);
    free(d);
    free(p);
    return rc;
}
