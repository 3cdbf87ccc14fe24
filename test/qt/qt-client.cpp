// A Qt client of openauto-system, as a Qt developer writes one: the QtDBus proxy that qdbusxml2cpp generated
// from dbus/org.openauto.System1.xml (system1.h, built by test/sandbox/qt.test.ts with
// "-i openauto-system1-types.h"), and a QLocalSocket client of the legacy socket that reads the fields the
// shipping app reads. It prints what it received, one JSON object per line; the test judges it.
//
//   qt-client types NAME=SIGNATURE...   the D-Bus signature each annotated Qt type marshals as
//   qt-client read                      GetHealth, GetStatus (unpacked), every property of the proxy
//   qt-client watch READY_FILE          HealthChanged (the generated signal) and PropertiesChanged until
//                                       hostapd was seen down and up again (READY_FILE: subscribed)
//   qt-client call MEMBER:ARG...        ApplyConfig:SECTION, RestartService:NAME; the reply or the error name
//   qt-client socket PATH REQUEST...    each REQUEST ({"method":…,"params":…}) sent the shipping app's way
//
// Qt's own warnings (an unregistered type, a signature mismatch) are printed as {"warning": …} lines.
#include <QtCore/QCoreApplication>
#include <QtCore/QFile>
#include <QtCore/QJsonArray>
#include <QtCore/QJsonDocument>
#include <QtCore/QJsonObject>
#include <QtCore/QMetaMethod>
#include <QtCore/QMetaProperty>
#include <QtCore/QTimer>
#include <QtDBus/QDBusConnection>
#include <QtDBus/QDBusConnectionInterface>
#include <QtDBus/QDBusPendingReply>
#include <QtNetwork/QLocalSocket>
#include <cstdio>
#include <functional>
#include <type_traits>
#include <utility>

#include "system1.h"

using Proxy = OrgOpenautoSystem1Interface;
// Whatever the XML's annotation made of the a{ss} members (the test must build against any of them).
using HealthMap = std::decay_t<decltype(std::declval<Proxy &>().health())>;

static const QString kService = QStringLiteral("org.openauto.System");
static const QString kPath = QStringLiteral("/org/openauto/System");

static void emitLine(const QJsonObject &o)
{
    const QByteArray line = QJsonDocument(o).toJson(QJsonDocument::Compact);
    std::fwrite(line.constData(), 1, size_t(line.size()), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

static void onQtMessage(QtMsgType, const QMessageLogContext &, const QString &text)
{
    emitLine({{QStringLiteral("warning"), text}});
}

// Any value the proxy hands over, as JSON: a{ss} types, QVariantMap with nested QDBusArguments, basic values.
static QJsonValue toJson(const QVariant &v)
{
    if (v.metaType() == QMetaType::fromType<OpenAutoStringMap>()) {
        QJsonObject o;
        const OpenAutoStringMap m = qvariant_cast<OpenAutoStringMap>(v);
        for (auto it = m.cbegin(); it != m.cend(); ++it)
            o.insert(it.key(), it.value());
        return o;
    }
    if (v.metaType() == QMetaType::fromType<QVariantMap>()) {
        QJsonObject o;
        const QVariantMap m = openAutoPlainMap(v.toMap());
        for (auto it = m.cbegin(); it != m.cend(); ++it)
            o.insert(it.key(), toJson(it.value()));
        return o;
    }
    if (v.metaType() == QMetaType::fromType<QVariantList>()) {
        QJsonArray a;
        for (const QVariant &x : v.toList())
            a.append(toJson(x));
        return a;
    }
    const QVariant plain = openAutoPlainValue(v);
    if (plain.metaType() != v.metaType())
        return toJson(plain);
    return QJsonValue::fromVariant(v);
}

static QJsonObject errorJson(const QDBusError &e)
{
    return {{QStringLiteral("error"), e.name()}, {QStringLiteral("message"), e.message()}};
}

static int doTypes(const QStringList &pairs)
{
    QJsonObject out;
    for (const QString &pair : pairs) {
        const QString name = pair.section(QLatin1Char('='), 0, 0);
        const QMetaType type = QMetaType::fromName(name.toUtf8());
        out.insert(name, type.isValid() ? QString::fromLatin1(QDBusMetaType::typeToSignature(type))
                                        : QStringLiteral("<not a registered type>"));
    }
    emitLine({{QStringLiteral("types"), out}});
    return 0;
}

static int doRead(Proxy &proxy)
{
    auto health = proxy.GetHealth();
    health.waitForFinished();
    emitLine(health.isError() ? errorJson(health.error())
                              : QJsonObject{{QStringLiteral("GetHealth"),
                                             toJson(QVariant::fromValue(health.argumentAt<0>()))}});

    auto status = proxy.GetStatus();
    status.waitForFinished();
    if (status.isError()) {
        emitLine(errorJson(status.error()));
    } else {
        // What QtDBus delivers before unpacking: the type of each top-level value.
        QJsonObject raw;
        const QVariantMap m = status.argumentAt<0>();
        for (auto it = m.cbegin(); it != m.cend(); ++it)
            raw.insert(it.key(), QString::fromLatin1(it.value().metaType().name()));
        emitLine({{QStringLiteral("GetStatus"), toJson(m)}, {QStringLiteral("GetStatusRawTypes"), raw}});
    }

    // Every property the generated proxy declares, read through it (Qt converts to the declared type).
    QJsonObject props;
    const QMetaObject *mo = proxy.metaObject();
    for (int i = mo->propertyOffset(); i < mo->propertyCount(); ++i) {
        const QMetaProperty p = mo->property(i);
        const QVariant v = p.read(&proxy);
        props.insert(QString::fromLatin1(p.name()),
                     QJsonObject{{QStringLiteral("type"), QString::fromLatin1(p.metaType().name())},
                                 {QStringLiteral("valid"), v.isValid()},
                                 {QStringLiteral("value"), toJson(v)}});
    }
    emitLine({{QStringLiteral("properties"), props}});
    const HealthMap typed = proxy.health();
    emitLine({{QStringLiteral("healthGetter"), toJson(QVariant::fromValue(typed))}});
    return 0;
}

// Receives org.freedesktop.DBus.Properties.PropertiesChanged (a string-based connection needs a slot).
class PropertiesWatcher : public QObject
{
    Q_OBJECT
public:
    std::function<void(const QString &, const QVariantMap &)> onChange;
    QStringList delivered;
public Q_SLOTS:
    // Connected to every signal of the generated proxy: notes which one arrived.
    void any() { delivered.append(QString::fromLatin1(sender()->metaObject()->method(senderSignalIndex()).name())); }
    void changed(const QString &iface, const QVariantMap &changedProps, const QStringList &)
    {
        if (onChange)
            onChange(iface, changedProps);
    }
};

// hostapd seen not active, then active again.
struct DownUp
{
    bool down = false;
    bool up = false;
    void see(const QString &state)
    {
        if (state != QLatin1String("active"))
            down = true;
        else if (down)
            up = true;
    }
};

static int doWatch(Proxy &proxy, const QString &readyFile)
{
    DownUp bySignal, byProperties;
    int signalCount = 0, propertyChanges = 0;
    auto finishIfDone = [&] {
        if (bySignal.up && byProperties.up)
            QCoreApplication::exit(0);
    };
    QObject::connect(&proxy, &Proxy::HealthChanged, [&](const HealthMap &health) {
        ++signalCount;
        const QJsonValue h = toJson(QVariant::fromValue(health));
        emitLine({{QStringLiteral("HealthChanged"), h}});
        bySignal.see(h.toObject().value(QStringLiteral("hostapd")).toString());
        finishIfDone();
    });
    PropertiesWatcher watcher;
    watcher.onChange = [&](const QString &iface, const QVariantMap &changed) {
        if (iface != QLatin1String(Proxy::staticInterfaceName()) || !changed.contains(QStringLiteral("Health")))
            return;
        ++propertyChanges;
        // A variant holding a{ss} arrives as a QDBusArgument: qdbus_cast reads it into the registered type.
        const OpenAutoStringMap health = qdbus_cast<OpenAutoStringMap>(changed.value(QStringLiteral("Health")));
        const QJsonValue h = toJson(QVariant::fromValue(health));
        emitLine({{QStringLiteral("PropertiesChanged"), h}});
        byProperties.see(h.toObject().value(QStringLiteral("hostapd")).toString());
        finishIfDone();
    };
    const bool connected = proxy.connection().connect(
        kService, kPath, QStringLiteral("org.freedesktop.DBus.Properties"), QStringLiteral("PropertiesChanged"),
        &watcher, SLOT(changed(QString, QVariantMap, QStringList)));
    emitLine({{QStringLiteral("propertiesConnected"), connected}});
    // Every signal the XML declares, through the generated proxy (an unregistered type would warn here).
    QJsonArray connectedSignals;
    const QMetaObject *mo = proxy.metaObject();
    const QMetaMethod any = watcher.metaObject()->method(watcher.metaObject()->indexOfSlot("any()"));
    for (int i = mo->methodOffset(); i < mo->methodCount(); ++i) {
        const QMetaMethod m = mo->method(i);
        if (m.methodType() == QMetaMethod::Signal && QObject::connect(&proxy, m, &watcher, any))
            connectedSignals.append(QString::fromLatin1(m.name()));
    }
    emitLine({{QStringLiteral("connectedSignals"), connectedSignals}});
    // A round trip through the bus after the match rules were added: they are in place before "ready".
    proxy.connection().interface()->isServiceRegistered(kService);
    QFile ready(readyFile);
    if (!ready.open(QIODevice::WriteOnly))
        return 2;
    ready.close();
    QTimer::singleShot(30000, [] { QCoreApplication::exit(3); });
    const int rc = QCoreApplication::exec();
    emitLine({{QStringLiteral("signals"), signalCount},
              {QStringLiteral("propertyChanges"), propertyChanges},
              {QStringLiteral("delivered"), QJsonArray::fromStringList(watcher.delivered)},
              {QStringLiteral("timedOut"), rc == 3}});
    return rc;
}

static int doCall(Proxy &proxy, const QStringList &calls)
{
    for (const QString &c : calls) {
        const QString member = c.section(QLatin1Char(':'), 0, 0);
        const QString arg = c.section(QLatin1Char(':'), 1);
        QJsonObject out{{QStringLiteral("call"), c}};
        if (member == QLatin1String("ApplyConfig")) {
            auto r = proxy.ApplyConfig(arg);
            r.waitForFinished();
            if (r.isError())
                out = QJsonObject{{QStringLiteral("call"), c}, {QStringLiteral("error"), r.error().name()},
                                  {QStringLiteral("message"), r.error().message()}};
            else {
                out.insert(QStringLiteral("changed"), r.argumentAt<0>());
                out.insert(QStringLiteral("restarted"), QJsonArray::fromStringList(r.argumentAt<1>()));
            }
        } else if (member == QLatin1String("RestartService")) {
            auto r = proxy.RestartService(arg);
            r.waitForFinished();
            if (r.isError()) {
                out.insert(QStringLiteral("error"), r.error().name());
                out.insert(QStringLiteral("message"), r.error().message());
            } else {
                out.insert(QStringLiteral("ok"), true);
            }
        } else {
            out.insert(QStringLiteral("error"), QStringLiteral("qt-client: unknown call"));
        }
        emitLine(out);
    }
    return 0;
}

// The legacy socket, read the shipping app's way: string ids counting up, params left out when empty,
// "result.ok", "result.name", "result.state", "result.error" and "error.message".
static int doSocket(const QString &path, const QStringList &requests)
{
    QLocalSocket s;
    s.connectToServer(path);
    if (!s.waitForConnected(5000)) {
        emitLine({{QStringLiteral("connectError"), s.errorString()}});
        return 2;
    }
    QByteArray buffer;
    int id = 1;
    for (const QString &req : requests) {
        QJsonObject msg = QJsonDocument::fromJson(req.toUtf8()).object();
        const QString method = msg.value(QStringLiteral("method")).toString();
        msg.insert(QStringLiteral("id"), QString::number(id++));
        if (msg.value(QStringLiteral("params")).toObject().isEmpty())
            msg.remove(QStringLiteral("params"));
        s.write(QJsonDocument(msg).toJson(QJsonDocument::Compact) + "\n");
        s.flush();
        // One answer per request, in order (nothing else is pipelined here).
        QJsonObject response;
        for (;;) {
            const int nl = buffer.indexOf('\n');
            if (nl >= 0) {
                QJsonParseError err;
                const QJsonDocument doc = QJsonDocument::fromJson(buffer.left(nl), &err);
                buffer.remove(0, nl + 1);
                if (err.error == QJsonParseError::NoError && doc.isObject()) {
                    response = doc.object();
                    break;
                }
                continue;
            }
            if (!s.waitForReadyRead(20000)) {
                emitLine({{QStringLiteral("method"), method}, {QStringLiteral("readError"), s.errorString()}});
                return 2;
            }
            buffer += s.readAll();
        }
        const QJsonObject result = response.value(QStringLiteral("result")).toObject();
        const QJsonObject error = response.value(QStringLiteral("error")).toObject();
        QJsonObject out{{QStringLiteral("method"), method},
                        {QStringLiteral("id"), response.value(QStringLiteral("id"))}};
        if (result.contains(QStringLiteral("ok")))
            out.insert(QStringLiteral("ok"), result.value(QStringLiteral("ok")).toBool());
        if (result.contains(QStringLiteral("name")))
            out.insert(QStringLiteral("name"), result.value(QStringLiteral("name")).toString());
        if (result.contains(QStringLiteral("state")))
            out.insert(QStringLiteral("state"), result.value(QStringLiteral("state")).toString());
        if (result.contains(QStringLiteral("error")))
            out.insert(QStringLiteral("resultError"), result.value(QStringLiteral("error")).toString());
        if (!error.isEmpty())
            out.insert(QStringLiteral("message"), error.value(QStringLiteral("message")).toString());
        if (method == QLatin1String("get_health") || method == QLatin1String("get_status"))
            out.insert(QStringLiteral("result"), result);
        emitLine(out);
    }
    return 0;
}

int main(int argc, char **argv)
{
    qInstallMessageHandler(onQtMessage);
    QCoreApplication app(argc, argv);
    registerOpenAutoSystem1Types();
    QStringList args = app.arguments().mid(1);
    const QString mode = args.isEmpty() ? QString() : args.takeFirst();
    if (mode == QLatin1String("types"))
        return doTypes(args);
    if (mode == QLatin1String("socket") && !args.isEmpty()) {
        const QString path = args.takeFirst();
        return doSocket(path, args);
    }
    Proxy proxy(kService, kPath, QDBusConnection::systemBus());
    proxy.setTimeout(20000);
    if (mode == QLatin1String("read"))
        return doRead(proxy);
    if (mode == QLatin1String("watch") && args.size() == 1)
        return doWatch(proxy, args.first());
    if (mode == QLatin1String("call"))
        return doCall(proxy, args);
    std::fprintf(stderr, "usage: qt-client types|read|watch FILE|call MEMBER:ARG...|socket PATH REQUEST...\n");
    return 64;
}

// One translation unit: the generated proxy, its moc output and this file's.
#include "system1.cpp"
#include "moc_system1.cpp"
#include "qt-client.moc"
