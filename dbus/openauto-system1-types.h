// Qt types for org.openauto.System1 (dbus/org.openauto.System1.xml), for proxies generated with
//   qdbusxml2cpp -i openauto-system1-types.h -p system1 org.openauto.System1.xml
// Call registerOpenAutoSystem1Types() once, before the first call or signal connection.
//
// SPDX-License-Identifier: GPL-3.0-or-later
#ifndef OPENAUTO_SYSTEM1_TYPES_H
#define OPENAUTO_SYSTEM1_TYPES_H

#include <QtCore/QMap>
#include <QtCore/QMetaType>
#include <QtCore/QString>
#include <QtCore/QVariant>
#include <QtDBus/QDBusArgument>
#include <QtDBus/QDBusMetaType>
#include <QtDBus/QDBusVariant>

// a{ss}: GetHealth, HealthChanged and the Health property, e.g. {"hostapd": "active"}. QVariantMap would be
// a{sv}, which fails at run time with "Unexpected reply signature".
typedef QMap<QString, QString> OpenAutoStringMap;
Q_DECLARE_METATYPE(OpenAutoStringMap)

inline void registerOpenAutoSystem1Types()
{
    qDBusRegisterMetaType<OpenAutoStringMap>();
}

// a{sv} (GetStatus): QtDBus hands a variant that holds a container (a nested a{sv}, an av) over as a
// QDBusArgument to be read by hand. This turns it, recursively, into plain QVariantMap / QVariantList /
// basic values; a basic value is returned as it is.
inline QVariant openAutoPlainValue(const QVariant &value)
{
    if (value.metaType() == QMetaType::fromType<QDBusVariant>())
        return openAutoPlainValue(qvariant_cast<QDBusVariant>(value).variant());
    if (value.metaType() != QMetaType::fromType<QDBusArgument>())
        return value;
    const QDBusArgument arg = qvariant_cast<QDBusArgument>(value);
    switch (arg.currentType()) {
    case QDBusArgument::MapType: {
        QVariantMap map;
        arg.beginMap();
        while (!arg.atEnd()) {
            arg.beginMapEntry();
            const QVariant key = openAutoPlainValue(arg.asVariant());
            const QVariant item = openAutoPlainValue(arg.asVariant());
            arg.endMapEntry();
            map.insert(key.toString(), item);
        }
        arg.endMap();
        return map;
    }
    case QDBusArgument::ArrayType: {
        QVariantList list;
        arg.beginArray();
        while (!arg.atEnd())
            list.append(openAutoPlainValue(arg.asVariant()));
        arg.endArray();
        return list;
    }
    case QDBusArgument::StructureType: {
        QVariantList fields;
        arg.beginStructure();
        while (!arg.atEnd())
            fields.append(openAutoPlainValue(arg.asVariant()));
        arg.endStructure();
        return fields;
    }
    default:
        return openAutoPlainValue(arg.asVariant());
    }
}

/** GetStatus's map with every nested map and list unpacked (see openAutoPlainValue). */
inline QVariantMap openAutoPlainMap(const QVariantMap &map)
{
    QVariantMap out;
    for (auto it = map.cbegin(); it != map.cend(); ++it)
        out.insert(it.key(), openAutoPlainValue(it.value()));
    return out;
}

#endif
