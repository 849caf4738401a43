#!/usr/bin/env python3
"""Rebuild given.txt, surnames.txt and the derived part of not_names.txt from their public sources.

Usage: build_lists.py FEMALE_FIRST MALE_FIRST SURNAMES_JSON COUNSEL_CHAT_CSV
  FEMALE_FIRST, MALE_FIRST: the 1990 U.S. Census name files dist.female.first, dist.male.first
  SURNAMES_JSON: the 2000 U.S. Census surnames, most frequent first, as a JSON array
  COUNSEL_CHAT_CSV: counsel-chat's 20200325_counsel_chat.csv (English text to tell common words by)
See README.md for where each comes from.
"""
import collections
import csv
import json
import re
import sys

# Given names used in the data that the 1990 lists predate.
EXTRA_GIVEN = """Aiden Amir Arjun Chen Connor Dmitri Kumar Kwame Liam Priya Rahul Raj Ravi Sergei
Yusuf Zach Zara""".split()
# Derived common words that are plainly names in this text (Spanish "ella", "una", "luna").
KEEP_AS_NAMES = {"Ella", "Luna", "Una", "Dan", "Amos", "Del", "Les"}
SURNAMES_KEPT = 20000


def census_names(path):
    with open(path, encoding="ascii") as f:
        return [line.split()[0].title() for line in f.read().splitlines()[1:] if line.strip()]


def main(female, male, surnames_json, counsel_csv):
    given = sorted(set(census_names(female)) | set(census_names(male)) | set(EXTRA_GIVEN))
    with open("given.txt", "w") as f:
        f.write("\n".join(given) + "\n")
    with open(surnames_json) as f:
        surnames = json.load(f)[:SURNAMES_KEPT]
    with open("surnames.txt", "w") as f:
        f.write("\n".join(surnames) + "\n")
    # A given name that English text writes in lower case ("will", "hope", "may") is a common
    # word first: web addresses and e-mail addresses are taken out before counting.
    texts = []
    with open(counsel_csv, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts += [row["questionText"] or "", row["answerText"] or ""]
    lower = collections.Counter()
    for t in texts:
        t = re.sub(r"\S*[@/.]\S*[a-z]\S*", "", t)
        lower.update(re.findall(r"(?<![A-Za-z])[a-z]+(?![A-Za-z])", t))
    common = sorted(g for g in given if lower[g.lower()] >= 2 and g not in KEEP_AS_NAMES)
    with open("common_given.txt", "w") as f:
        f.write("\n".join(common) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])
