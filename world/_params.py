"""The simulated shop's fixed constants: categories, carriers, tariff, calendar.

These describe the world, not a decision the pipeline makes, so they live in code beside the
simulator rather than in ``conf/``. Every number here is read by the simulator and, where it
shapes purchases, by the oracle too, so the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from cadence.ingest._tables import CATEGORIES

N_CAT = len(CATEGORIES)
CAT_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
SKUS_PER_CATEGORY = 20

# Per category: median price, weight kg, volume cm3, share of fragile SKUs.
PRICE = np.array([35, 25, 30, 15, 28, 12, 6, 120, 30, 12, 90, 20], dtype=float)
WEIGHT = np.array([0.9, 3.5, 6.0, 0.5, 0.3, 2.0, 0.4, 0.8, 0.5, 0.6, 5.0, 0.8])
VOLUME = np.array([2500, 21000, 9000, 1500, 600, 3500, 2000, 3000, 4000, 1200, 40000, 6000.0])
FRAGILE_SHARE = np.array([0.05, 0, 0, 0.3, 0.35, 0.1, 0.05, 0.7, 0, 0, 0.5, 0.1])

# Replenishment cycles (days): mean and spread of the gap between two purchases of a category.
CYCLE_CATS = ("infant_formula", "diapers", "pet_food", "coffee", "skincare", "household")
CYCLE_IDX = np.array([CAT_INDEX[c] for c in CYCLE_CATS])
CYCLE_MEAN = np.array([30.0, 20.0, 45.0, 25.0, 60.0, 40.0])
# A purchase's gap varies around the shopper's own mean cycle with this coefficient of
# variation, the baby's needs steadier than coffee or skincare. With skipped cycles, bundles,
# stockpiles and lapses on top, a shopper's gaps vary as in real order logs (per-shopper gap
# CVs of 0.3-0.5).
CYCLE_CV = np.array([0.15, 0.15, 0.20, 0.25, 0.25, 0.25])
# Spread of a shopper's own mean cycle around the category's (log scale, mean kept): about 30%,
# as diaper subscribers' own cycles spread (quartiles 28/36/50 days).
CYCLE_USER_JITTER = 0.3
# Daily probability that a shopper's need for the category ends (the child outgrows formula).
NEED_END_HAZARD = np.array([1 / 540, 1 / 720, 1 / 1000, 1 / 1000, 1 / 1000, 1 / 1000])

# Baskets. A due replenishment is bought 1, 2 or 3 at a time with these chances; each order adds
# Poisson(ADDON_LINES) lines from the shopper's tastes, 1 or 2 of each with these chances; and a
# replenishment due within BUNDLE_DAYS joins an order with chance BUNDLE_PROB (formula bought
# with the diapers), its cycle starting again from that order.
REPLENISH_QTY = np.array([0.5, 0.35, 0.15])
ADDON_LINES = 1.6
ADDON_QTY = np.array([0.7, 0.3])
BUNDLE_DAYS = 3
BUNDLE_PROB = 0.6

# Households: the chance a shopper lives with another shopper of the same city (shares their
# address), which puts about 13% of shoppers in households of two or more.
HOUSEHOLD_JOIN = 0.07

# Impulse purchases: daily purchase probability while dormant / interested, per unit engagement,
# and the hidden interest state's daily switch probabilities.
IMPULSE_DORMANT = 0.003
IMPULSE_INTERESTED = 0.06
INTEREST_ON = 0.03
INTEREST_OFF = 0.35
PROB_CAP = 0.9

# Lapse and return. An active shopper may lapse (stop buying here) after each order, with a
# chance of their own (BG/NBD's "drop-out after a purchase": trial buyers mostly lapse after the
# first order, a loyal core hardly ever; the chance falls as 1/sqrt(orders so far), as loyalty
# grows), and on any day with a small hazard raised by each late
# or damaged delivery (capped). A lapsed shopper buys their replenishments elsewhere, and comes
# back with a small daily win-back hazard of their own that a coupon in hand raises; coming back
# is an order.
LAPSE_AFTER_ORDER_A = 1.3
LAPSE_AFTER_ORDER_B = 0.7
CHURN_MEDIAN = 1 / 700
CHURN_SPREAD = 0.6
CHURN_PER_BAD = 0.6
CHURN_BAD_CAP = 4
WINBACK_MEDIAN = 1 / 900
WINBACK_SPREAD = 0.8
# Shoppers who joined before the start and were active at it; the others had lapsed already.
ACTIVE_AT_START = 0.45
# Share of a shopper's due replenishments bought here while active (Beta, mean 0.97): the rest
# are skipped or bought elsewhere, and the cycle runs on from the day it fell due.
LOYALTY_A = 30.0
LOYALTY_B = 1.0
# A replenishment bought with a coupon in hand (or an offer's discount) is stockpiled: one more
# unit, and the next gap's mean is this many times the shopper's own.
STOCKPILE_GAP = 1.25

# Coupon campaigns: every CAMPAIGN_EVERY days from CAMPAIGN_FIRST; a coupon lasts COUPON_DAYS
# (shorter than the cadence, so nobody holds two); lapsed shoppers are targeted more.
CAMPAIGN_FIRST = 3
CAMPAIGN_EVERY = 14
COUPON_DAYS = 10
COUPON_DISCOUNT = 0.10
# How strongly a coupon in hand raises impulse buying, per unit of a shopper's responsiveness.
COUPON_LIFT = 2.5
LAPSED_DAYS = 45
ISSUE_LAPSED = 0.30
ISSUE_ACTIVE = 0.06
assert COUPON_DAYS < CAMPAIGN_EVERY

# Weekly rhythm (Monday first) and shopping festivals (month, day, length in days, multiplier).
WEEKDAY = np.array([0.9, 0.9, 0.95, 1.0, 1.05, 1.2, 1.15])
FESTIVALS = ((6, 18, 3, 2.0), (11, 11, 11, 2.2), (11, 28, 4, 1.5), (12, 12, 2, 1.5))

# Logistics. Zones in ingest._tables.ZONES order: same_city, same_province, cross_region, remote.
VOLUMETRIC_DIVISOR = 6000.0
TARIFF_FIRST_KG = np.array([5.0, 7.0, 10.0, 16.0])
TARIFF_NEXT_KG = np.array([1.0, 2.0, 4.0, 8.0])
PROMISE_DAYS = np.array([1, 2, 4, 7])
ZONE_TRANSIT_DAYS = np.array([0.35, 0.9, 1.6, 3.6])
ZONE_DAMAGE = np.array([0.8, 1.0, 1.3, 1.6])
CARRIERS = ("swift", "national", "budget", "metro")
CARRIER_PRICE = np.array([1.4, 1.0, 0.8, 0.7])
CARRIER_SPEED = np.array([0.75, 1.0, 1.35, 0.8])
CARRIER_DAMAGE = np.array([0.6, 1.0, 1.8, 0.8])
BASE_DAMAGE = 0.01
# Picking cost by node kind (regional, forward, store): stores pick by hand.
PICK_COST = np.array([0.8, 1.0, 2.0])
# Dispatch waves by node kind: the cut-off hours (UTC) of each day's waves, how many hours
# before a cut-off an order must come in to be picked for it, and the handling cost of a dispatch
# batch (one node and wave with at least one parcel). A wave's capacity is the node's daily
# capacity shared evenly; parcels past it wait for the next wave, in order of arrival. The
# carrier collects a wave's parcels about HANDOVER_HOURS after its cut-off.
WAVE_CUTOFFS = ((9, 15, 22), (11, 21), (12, 19))
WAVE_LEAD_HOURS = np.array([1.0, 1.0, 1.0])
BATCH_COST = np.array([40.0, 25.0, 10.0])
HANDOVER_HOURS = 1.5

# Returns: share of delivered items returned, by category; damaged goods mostly come back.
RETURN_RATE = np.array([0.01, 0.01, 0.01, 0.01, 0.03, 0.01, 0.005, 0.05, 0.12, 0.02, 0.04, 0.03])
RETURN_IF_DAMAGED = 0.6

# Consent to profiling: the share of shoppers who withdraw it at some point, and the share of
# those who grant it again 30-120 days later.
CONSENT_WITHDRAW_SHARE = 0.04
CONSENT_REGRANT_SHARE = 0.25
# The share who withdraw their consent to being contacted (offers) at some point.
CONTACT_WITHDRAW_SHARE = 0.06
