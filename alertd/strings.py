"""Every fixed word of alertd's mail, in each language it speaks: what the default templates say (as ``t``),
and how each class of fetch or parse error reads in a digest's feed-health section.

One table per purpose, one entry per language; a test checks both languages have the same keys.
"""

from __future__ import annotations

__all__ = ["ERROR_CLASSES", "STRINGS", "counted"]

#: Every fixed string of the default templates, per language; templates get the reader's as ``t``.
STRINGS: dict[str, dict[str, str]] = {
    "fr": {
        "story": "article",
        "stories": "articles",
        "for": "pour",
        "digest": "Veille alertd",
        "alert": "Alerte",
        "alert_heading": "Alerte alertd",
        "also_in": "aussi dans",
        "other_version": "1 autre version",
        "other_versions": "{n} autres versions",
        "in_link": "dans le lien",
        "further": "plus loin dans le texte",
        "rule_query": "requête du sujet",
        "rule_all": "un terme par groupe requis",
        "rule_score": "score {score} (seuil {min})",
        "why": "Pourquoi",
        "more": "autres",
        "more_one": "autre",
        "already_sent": "déjà envoyé",
        "feed_health": "État des flux",
        "since": "depuis",
        "colon": " :",
        "sent_by": "Envoyé par alertd à",
        "change": "Pour changer vos sujets ou votre calendrier, ou ne plus recevoir ces e-mails, écrivez à "
        "{contact} (ou utilisez le bouton « Se désabonner » de votre messagerie).",
        "alert_note": "Envoyé tout de suite : ces sujets sont prioritaires. Ces articles figureront aussi "
        "dans votre prochaine veille.",
        "health_gone": "n’existe plus (HTTP 410) : alertd a cessé de l’interroger",
        "health_failing": "en échec : {error} ({attempts})",
        "attempt_one": "{n} tentative",
        "attempt_many": "{n} tentatives",
        "health_moved": "a déménagé définitivement : alertd lit désormais {target} ; mettez la configuration à jour",
        "health_flood": "a publié trop d’articles d’un coup : seuls les plus récents ont pu déclencher une alerte, "
        "les autres sont marqués comme lus",
    },
    "en": {
        "story": "story",
        "stories": "stories",
        "for": "for",
        "digest": "alertd digest",
        "alert": "Alert",
        "alert_heading": "alertd alert",
        "also_in": "also in",
        "other_version": "1 other version",
        "other_versions": "{n} other versions",
        "in_link": "in the link",
        "further": "further in the text",
        "rule_query": "the topic's query",
        "rule_all": "a term per required group",
        "rule_score": "score {score} (threshold {min})",
        "why": "Why",
        "more": "more",
        "more_one": "more",
        "already_sent": "already sent",
        "feed_health": "Feed health",
        "since": "since",
        "colon": ":",
        "sent_by": "Sent by alertd to",
        "change": "To change your topics or schedule, or to stop these emails, write to {contact} (or use "
        "your mail client's Unsubscribe button).",
        "alert_note": "Sent right away: these topics are high priority. These stories will also be in your "
        "next digest.",
        "health_gone": "gone (HTTP 410): alertd stopped polling it",
        "health_failing": "failing: {error} ({attempts})",
        "attempt_one": "{n} attempt",
        "attempt_many": "{n} attempts",
        "health_moved": "moved permanently: alertd now fetches {target}; update the config at your convenience",
        "health_flood": "published too many items at once: only the most recent could alert, the others were "
        "marked seen",
    },
}
#: How each class of fetch or parse error (``FeedHealth.error_class``) reads in a digest; unknown ones as is.
ERROR_CLASSES: dict[str, dict[str, str]] = {
    "fr": {
        "timeout": "délai dépassé",
        "connect_error": "connexion impossible",
        "dns_error": "nom de domaine introuvable",
        "tls_error": "certificat ou TLS refusé",
        "http_4xx": "refusé par le serveur (HTTP 4xx)",
        "http_5xx": "erreur du serveur (HTTP 5xx)",
        "rate_limited": "trop de requêtes, le serveur demande d’attendre",
        "parse_error": "document illisible",
        "too_large": "document trop volumineux",
        "too_many_redirects": "trop de redirections",
        "redirect_downgrade": "redirection de https vers http refusée",
        "ssrf_blocked": "adresse interne refusée",
        "invalid_url": "adresse invalide",
        "protocol_error": "réponse HTTP invalide",
    },
    "en": {
        "timeout": "timed out",
        "connect_error": "cannot connect",
        "dns_error": "host name not found",
        "tls_error": "certificate or TLS refused",
        "http_4xx": "refused by the server (HTTP 4xx)",
        "http_5xx": "server error (HTTP 5xx)",
        "rate_limited": "too many requests, the server asks to wait",
        "parse_error": "unreadable document",
        "too_large": "document too large",
        "too_many_redirects": "too many redirects",
        "redirect_downgrade": "https to http redirect refused",
        "ssrf_blocked": "internal address refused",
        "invalid_url": "invalid address",
        "protocol_error": "invalid HTTP response",
    },
}


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``"1 new item"``, ``"2 new items"``: a count and its noun, in the English of the logs."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
